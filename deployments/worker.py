"""`connecthub worker`: a Prefect process worker on ConnectHub's pool, beside its fork server.

The worker polls every CONNECTHUB_WORKER_POLL_SECONDS, starts scheduled runs 30 s early (the
server holds each run until its slot, so process start-up no longer makes runs late), makes
every flow run send heartbeats (see `deployments.heartbeat`), and hands its runs the same
database, key file, log directory and Prefect server as ConnectHub's own processes; with an
http:// Prefect API, also a one-certificate CA bundle (`http_api_ca_bundle` says why).

`run_worker` starts two children with that one environment: the fork server
(`deployments.forkserver`, the warm parent every run's process is forked from: the pool's
command is `deployments.launcher`) and Prefect's own worker (`deployments.prefect_worker`).
It forwards SIGTERM and SIGINT to both, restarts a fork server that died (runs start cold
meanwhile: the launcher falls back to a fresh `python -m prefect.engine` with a warning), and
when the worker exits, stops the fork server and exits as the worker did. Both children get
PR_SET_PDEATHSIG, so they stop when `connecthub worker` dies, even by SIGKILL. With
CONNECTHUB_WARM_START=false only the worker runs, and every run starts cold, without a warning.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from connecthub.core.config import get_settings
from connecthub.core.files import write_private_file
from deployments.heartbeat import HEARTBEAT_SECONDS
from deployments.launcher import SOCKET_ENV, SOCKET_NAME, WARM_START_OFF

logger = logging.getLogger("connecthub.worker")
PR_SET_PDEATHSIG = 1
FORKSERVER_READY_SECONDS = 60.0
STOP_GRACE_SECONDS = 10.0
HTTP_API_CA_BUNDLE = "prefect-http-api-ca.pem"


def worker_environment() -> dict[str, str]:
    """The environment of a ConnectHub worker and of the flow runs it starts."""
    settings = get_settings()
    env = dict(os.environ)
    env.setdefault("PREFECT_WORKER_QUERY_SECONDS", f"{settings.worker_poll_seconds:g}")
    env.setdefault("PREFECT_WORKER_PREFETCH_SECONDS", "30")
    env.setdefault("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", str(HEARTBEAT_SECONDS))
    # The pool starts runs as `python -m prefect.engine`: `python` is this interpreter.
    env["PATH"] = os.pathsep.join(
        filter(None, [str(Path(sys.executable).parent), env.get("PATH")])
    )
    env["DATA_DIR"] = str(settings.data_dir.resolve())
    if not settings.warm_start:
        env[SOCKET_ENV] = WARM_START_OFF
    # Unix socket paths hold 107 bytes: with a long DATA_DIR, set it somewhere shorter.
    env.setdefault(SOCKET_ENV, str(settings.data_dir.resolve() / SOCKET_NAME))
    env["DB_URL"] = settings.database_url
    env["FERNET_KEY_PATH"] = str(settings.key_path.resolve())
    if settings.log_dir is not None:
        env["LOG_DIR"] = str(settings.log_dir.resolve())
    if settings.prefect_api_url:
        env["PREFECT_API_URL"] = settings.prefect_api_url
    if settings.prefect_auth_string:  # the worker's and every flow run's Prefect client
        env["PREFECT_API_AUTH_STRING"] = settings.prefect_auth_string
    if env.get("PREFECT_API_URL", "").startswith("http://") and not env.get(
        "PREFECT_API_SSL_CERT_FILE"
    ):
        try:
            bundle = http_api_ca_bundle(settings.data_dir.resolve())
        except OSError as error:  # a DATA_DIR it cannot write: slower runs, nothing worse
            logger.warning("could not write %s (%s); Prefect's clients load certifi's roots",
                           settings.data_dir.resolve() / HTTP_API_CA_BUNDLE, error)
        else:
            env["PREFECT_API_SSL_CERT_FILE"] = str(bundle)
    return env


def http_api_ca_bundle(directory: Path) -> Path:
    """The CA bundle of the Prefect clients of a plain-HTTP API: one certificate, trusted by none.

    Every Prefect client builds a verifying SSL context when it is created, whatever the API's
    scheme, and loads the CA bundle into it: certifi's ~150 roots cost 14-28 ms of CPU, a
    one-certificate bundle 0.4 ms. Prefect's worker creates a client per run (to watch it for
    cancellation) and a run process several (its API, events and log clients, their version
    checks), so with an http:// API, where no TLS handshake ever happens, loading roots cost
    every run ~0.26 CPU-s of its 1.42 (bench/ throughput, same machine and window, with and
    without: the worker 0.19 -> 0.13 s per run, the run process 0.60 -> 0.39 s). The worker
    and its runs therefore get this bundle as PREFECT_API_SSL_CERT_FILE, unless the operator
    set one. Its certificate is self-signed by a key that only ever existed in this function's
    memory and it expired when it was made, so it vouches for no server: a client that reached
    a TLS endpoint with it would refuse it, as it should refuse anything it was not told to
    trust.
    """
    path = directory / HTTP_API_CA_BUNDLE
    if not path.exists():
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ConnectHub: trusts no one")])
        now = datetime.now(UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(seconds=2))
            .not_valid_after(now - timedelta(seconds=1))
            .sign(key, hashes.SHA256())
        )
        # Another process may have written it meanwhile: theirs is as good, and stays.
        write_private_file(path, certificate.public_bytes(serialization.Encoding.PEM),
                           replace=False)
    return path


def worker_argv(limit: int | None = None, name: str | None = None) -> list[str]:
    """`prefect worker start` on the ConnectHub work pool (through `deployments.prefect_worker`,
    which computes the runs' environment once)."""
    argv = [
        sys.executable, "-m", "deployments.prefect_worker", "worker", "start",
        "--pool", get_settings().work_pool, "--type", "process",
    ]
    if limit:
        argv += ["--limit", str(limit)]
    if name:
        argv += ["--name", name]
    return argv


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the process that started it dies."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _start(argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, env=env, preexec_fn=_die_with_parent)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class _ForkServer:
    """The fork server child: started, waited for, and started again when it dies."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.socket = Path(env[SOCKET_ENV])
        self.process: subprocess.Popen[bytes] | None = None
        self.backoff = 1.0
        self.restart_at = 0.0

    def start(self) -> None:
        self.process = _start([sys.executable, "-m", "deployments.forkserver"], self.env)
        deadline = time.monotonic() + FORKSERVER_READY_SECONDS
        # It listens once its imports are done; until then runs start cold.
        while not self.socket.exists() and self.process.poll() is None:
            if time.monotonic() > deadline:
                logger.warning("the fork server is not listening after %.0f s; runs start cold "
                               "until it is", FORKSERVER_READY_SECONDS)
                return
            time.sleep(0.1)

    def watch(self) -> None:
        """Start it again, with a backoff, if it died."""
        if self.process is None or self.process.poll() is None:
            return
        now = time.monotonic()
        if self.restart_at == 0.0:
            logger.warning("the fork server exited with status %s; runs start cold until it is "
                           "back (in %.0f s)", self.process.returncode, self.backoff)
            self.restart_at = now + self.backoff
            self.backoff = min(self.backoff * 2, 60.0)
        elif now >= self.restart_at:
            self.restart_at = 0.0
            self.start()

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)


def run_worker(limit: int | None = None, name: str | None = None) -> int:
    """Run the fork server (unless warm start is off) and the worker; the worker's exit code."""
    env = worker_environment()
    forkserver = _ForkServer(env) if env[SOCKET_ENV] != WARM_START_OFF else None
    if forkserver is not None:
        forkserver.start()
    worker = _start(worker_argv(limit, name), env)

    def forward(signum: int, _frame: object) -> None:
        worker.send_signal(signum)  # the worker stops first; the fork server once it has

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    try:
        while worker.poll() is None:
            if forkserver is not None:
                forkserver.watch()
            time.sleep(0.5)
    finally:
        _stop(worker)
        if forkserver is not None:
            forkserver.stop()
    return worker.returncode
