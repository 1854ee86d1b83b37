"""Jobs as code: reading a YAML/JSON file of job definitions, and exporting jobs without secrets.

A file is a list of jobs (or `{"jobs": [...]}`), each a mapping of `JobSpec` fields. Secret
values may be `${ENV_VAR}` (or `${ENV_VAR:-default}`) references, resolved from the environment
when the file is applied, so the file itself can be committed. Every job is validated before
anything is written: an error names the job and the field, and the caller applies all of the
file or none of it.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from connecthub.jobs.spec import EXPORTED_FIELDS, JobSpec, JobSpecFieldError, field_errors

ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class JobFileError(ValueError):
    """A jobs file that cannot be applied; nothing was written."""


def _resolve_env(value: Any, where: str) -> Any:
    if isinstance(value, dict):
        return {key: _resolve_env(item, f"{where}.{key}") for key, item in value.items()}
    if isinstance(value, list):
        return [_resolve_env(item, f"{where}[{index}]") for index, item in enumerate(value)]
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            value = os.environ.get(name)
            if default is not None and not value:
                return default  # ${NAME:-default}: unset or empty, as in the shell
            if value is not None:
                return value
            raise JobFileError(f"{where}: environment variable {name} is not set")

        return ENV_REFERENCE.sub(substitute, value)
    return value


def read_job_file(path: Path) -> list[JobSpec]:
    """Every job in `path`, validated; `JobFileError` at the first job that is not valid."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise JobFileError(f"cannot read {path}: {error.strerror}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError, RecursionError) as error:
        reason = "nested too deeply" if isinstance(error, RecursionError) else str(error)
        raise JobFileError(f"{path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: "
                           f"{reason.splitlines()[0]}") from None
    if isinstance(data, dict) and set(data) == {"jobs"}:
        data = data["jobs"]
    if not isinstance(data, list):
        raise JobFileError(f"{path} must hold a list of jobs (or a mapping with a 'jobs' list)")
    specs: list[JobSpec] = []
    seen: set[str] = set()
    for index, entry in enumerate(data):
        label = f"job #{index + 1}"
        if not isinstance(entry, dict):
            raise JobFileError(f"{label}: each job must be a mapping of fields")
        if isinstance(entry.get("id"), str):
            label = f"job '{entry['id']}'"
        if entry.get("id") in seen:
            raise JobFileError(f"{label}: the id appears twice in the file")
        if "secret_cfg" in entry:
            try:
                resolved = _resolve_env(entry["secret_cfg"], "secret_cfg")
            except JobFileError as error:
                raise JobFileError(f"{label}: {error}") from None
            entry = {**entry, "secret_cfg": resolved}
        try:
            spec = JobSpec.model_validate(entry)
        except (ValidationError, JobSpecFieldError) as error:
            problems = "; ".join(f"{field}: {message}" for field, message in
                                 field_errors(error).items())
            raise JobFileError(f"{label}: {problems}") from None
        seen.add(spec.id)
        specs.append(spec)
    return specs


def export_job(job: Any) -> dict[str, Any]:
    """A stored job (a `db.models.Job`) as a jobs-file entry; the secrets are never exported."""
    return {field: getattr(job, field) for field in EXPORTED_FIELDS}
