"""Test plugins: one that echoes, one that fails loudly with its secret, one that sleeps."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from connecthub.jobs.base import BaseJob


class EchoJob(BaseJob):
    def run(self, params: dict[str, Any], secrets: dict[str, Any]) -> Any:
        return {"params": params, "secret_keys": sorted(secrets)}


class LeakyFailingJob(BaseJob):
    """In a step named after its secret, logs the secret, its repr and prints it, then raises
    with the secret in the message."""

    def run(self, params: dict[str, Any], secrets: dict[str, Any]) -> Any:
        token = secrets["token"]
        with self.step(f"call the remote with {token}"):
            self.logger.info("about to use token %s", token)
            self.logger.warning("secrets are %r", secrets)
            print(f"printing the token {token}")
            raise RuntimeError(f"remote refused token {token}")


class SleepJob(BaseJob):
    """Writes its process id to params['pid_file'], then sleeps params['seconds']."""

    def run(self, params: dict[str, Any], secrets: dict[str, Any]) -> Any:
        if params.get("pid_file"):
            Path(params["pid_file"]).write_text(str(os.getpid()))
        time.sleep(float(params.get("seconds", 60)))
        return {"slept": params.get("seconds", 60)}
