"""Fernet secrets: round trip, the key file (0600, created once by racing processes), fail
closed, decryption errors that name the job, and key rotation, including two rotations at once
and one killed half-way (real processes on a file-based SQLite database)."""

from __future__ import annotations

import logging
import os
import signal
import stat
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet, InvalidToken

from connecthub.bootstrap import prepare
from connecthub.db import crud
from connecthub.db.engine import session_scope
from connecthub.jobs.spec import JobSpec
from connecthub.security.fernet import (
    DecryptionError,
    KeyUnusableError,
    check_key_usable,
    decrypt_json,
    encrypt_json,
    load_keys,
    retire_old_keys,
    rotate_key,
)

ECHO = "tests.plugins.jobs:EchoJob"
SECRETS = {
    "alpha": {"token": "sk_live_alpha_7c1e2f9d"},
    "beta": {"password": "b3ta-pa55word-secret", "port": 5432},
    "gamma": {"api": {"key": "gamma-nested-key-0042"}},
}
PROCESS_TIMEOUT = 60


@pytest.fixture(autouse=True)
def restore_connecthub_logger() -> Iterator[None]:
    """`prepare()` configures the `connecthub` logger for good; undo that for later tests."""
    logger = logging.getLogger("connecthub")
    handlers, propagate, level = list(logger.handlers), logger.propagate, logger.level
    configured = logger.__dict__.get("_connecthub_configured")
    yield
    logger.handlers[:] = handlers
    logger.propagate, logger.level = propagate, level
    if configured is None:
        logger.__dict__.pop("_connecthub_configured", None)
    else:
        logger._connecthub_configured = configured  # type: ignore[attr-defined]


def key_lines(path: Path) -> list[str]:
    return path.read_text().split()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def save_jobs(secrets: dict[str, dict] = SECRETS) -> None:
    with session_scope() as session:
        for job_id, secret in secrets.items():
            crud.save_job(session, JobSpec(
                id=job_id, cron_expr="* * * * *", handler_path=ECHO, secret_cfg=secret,
            ))
        # A job without secrets is not a token and is left alone by rotation.
        crud.save_job(session, JobSpec(id="plain", cron_expr="* * * * *", handler_path=ECHO))


def stored_tokens() -> dict[str, str]:
    with session_scope() as session:
        return {job.id: job.secret_cfg for job in crud.list_jobs(session) if job.secret_cfg}


def assert_all_secrets_decrypt(secrets: dict[str, dict] = SECRETS) -> None:
    tokens = stored_tokens()
    assert set(tokens) == set(secrets)
    for job_id, secret in secrets.items():
        assert decrypt_json(tokens[job_id], job_id=job_id) == secret


def reencrypt_in_db(rotate) -> int:  # type: ignore[no-untyped-def]
    with session_scope() as session:
        return crud.reencrypt_secrets(session, rotate)


def child_env() -> dict[str, str]:
    """This test's settings (already in os.environ via the fixtures), for a child process."""
    env = dict(os.environ)
    env.pop("CONNECTHUB_DEBUG", None)
    return env


def run_children(script: str, args_list: list[list[str]], cwd: Path) -> list[str]:
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script, *args], cwd=cwd, env=child_env(),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for args in args_list
    ]
    outputs = []
    for process in processes:
        out, err = process.communicate(timeout=PROCESS_TIMEOUT)
        assert process.returncode == 0, err
        outputs.append(out)
    return outputs


def wait_for(path: Path, process: subprocess.Popen[str] | None = None, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"child exited early: {process.communicate()}")
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.02)


# -- encryption and the key file -----------------------------------------------------------------


def test_round_trip(sqlite_env: Path) -> None:
    secret = {"token": "sk_live_roundtrip_99", "nested": {"list": [1, "zwei", None]}, "ü": "ß"}
    token = encrypt_json(secret)
    assert isinstance(token, str) and token.startswith("gAAAAA")
    assert "sk_live_roundtrip_99" not in token
    assert decrypt_json(token) == secret
    assert encrypt_json(secret) != token  # a fresh IV each time
    Fernet(key_lines(sqlite_env / "fernet.key")[0].encode()).decrypt(token.encode())
    with pytest.raises(TypeError):
        encrypt_json(["not", "an", "object"])  # type: ignore[arg-type]


def test_key_file_is_created_once_with_mode_0600(sqlite_env: Path) -> None:
    path = sqlite_env / "fernet.key"
    assert not path.exists()
    old_umask = os.umask(0)  # even with a permissive umask
    try:
        token = encrypt_json({"a": "b"})
    finally:
        os.umask(old_umask)
    assert mode(path) == 0o600
    keys = key_lines(path)
    assert len(keys) == 1
    Fernet(keys[0].encode())
    encrypt_json({"c": "d"})
    assert key_lines(path) == keys  # used, not regenerated
    assert decrypt_json(token) == {"a": "b"}
    assert sorted(p.name for p in path.parent.iterdir() if p.name.startswith(".fernet-")) == []


RACE_SCRIPT = """
import sys, time
from pathlib import Path
from connecthub.security.fernet import encrypt_json, load_keys
ready, go, name = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
ready.touch()
while not go.exists():
    time.sleep(0.0005)
print(load_keys()[0].decode())
print(encrypt_json({"who": name}))
"""


def test_eight_processes_racing_create_one_key(sqlite_env: Path, tmp_path: Path) -> None:
    path = sqlite_env / "fernet.key"
    assert not path.exists()
    go = tmp_path / "go"
    processes = []
    for index in range(8):
        processes.append(subprocess.Popen(
            [sys.executable, "-c", RACE_SCRIPT, str(tmp_path / f"ready{index}"), str(go),
             f"p{index}"],
            cwd=tmp_path, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        ))
    for index, process in enumerate(processes):
        wait_for(tmp_path / f"ready{index}", process)
    go.touch()  # all eight are spinning: release them at once
    results = []
    for process in processes:
        out, err = process.communicate(timeout=PROCESS_TIMEOUT)
        assert process.returncode == 0, err
        results.append(out.split())
    keys = {key for key, _token in results}
    assert len(keys) == 1
    assert path.read_text() == f"{keys.pop()}\n"  # complete: one whole key and its newline
    assert mode(path) == 0o600
    for index, (_key, token) in enumerate(results):
        assert decrypt_json(token) == {"who": f"p{index}"}
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".fernet-")] == []


# -- fail closed ----------------------------------------------------------------------------------


def test_missing_key_file_with_encrypted_data_fails_closed(sqlite_env: Path) -> None:
    path = sqlite_env / "fernet.key"
    save_jobs()
    path.unlink()
    tokens = list(stored_tokens().values())
    with pytest.raises(KeyUnusableError) as caught:
        check_key_usable(tokens)
    assert str(path) in str(caught.value)
    assert "missing" in str(caught.value)
    with pytest.raises(KeyUnusableError):
        prepare()  # every entry point runs this check
    with pytest.raises(DecryptionError):
        decrypt_json(tokens[0], job_id="alpha")
    assert not path.exists()  # and no new key was generated behind our back


def test_saving_secrets_never_creates_a_key_while_encrypted_data_exists(
    sqlite_env: Path,
) -> None:
    """A long-running admin passed the start-up check; if the key file then disappears (a
    volume not mounted any more, a bad restore), saving a job's secrets must refuse, not
    generate a fresh key that can never read the other jobs' secrets."""
    path = sqlite_env / "fernet.key"
    save_jobs()
    path.unlink()
    with pytest.raises(KeyUnusableError), session_scope() as session:
        crud.save_job(session, JobSpec(
            id="new.job", cron_expr="* * * * *", handler_path=ECHO,
            secret_cfg={"token": "fresh-secret"},
        ))
    assert not path.exists()
    with session_scope() as session:
        assert session.get(crud.Job, "new.job") is None


@pytest.mark.parametrize("replacement", ["other-key", "garbage", "empty"])
def test_replaced_key_file_fails_closed(sqlite_env: Path, replacement: str) -> None:
    path = sqlite_env / "fernet.key"
    save_jobs()
    content = {
        "other-key": Fernet.generate_key().decode() + "\n",
        "garbage": "this is not a fernet key\n",
        "empty": "",
    }[replacement]
    path.write_text(content)
    with pytest.raises(KeyUnusableError) as caught:
        check_key_usable(list(stored_tokens().values()))
    assert str(path) in str(caught.value)
    with pytest.raises(KeyUnusableError):
        prepare()
    assert path.read_text() == content  # left as it was, not overwritten


def test_no_encrypted_data_creates_the_key(sqlite_env: Path) -> None:
    path = sqlite_env / "fernet.key"
    with session_scope() as session:
        crud.save_job(session, JobSpec(id="plain", cron_expr="* * * * *", handler_path=ECHO))
    assert not path.exists()
    prepare()
    assert len(key_lines(path)) == 1
    assert mode(path) == 0o600
    check_key_usable([])
    assert len(key_lines(path)) == 1


def test_decryption_error_names_the_job_not_the_token(sqlite_env: Path) -> None:
    plaintext = "sk_live_never_show_me_31337"
    token = encrypt_json({"token": plaintext})
    (sqlite_env / "fernet.key").write_text(Fernet.generate_key().decode() + "\n")
    with pytest.raises(DecryptionError) as caught:
        decrypt_json(token, job_id="crm.nightly-sync")
    message = str(caught.value)
    assert "crm.nightly-sync" in message
    assert str(sqlite_env / "fernet.key") in message
    rendered = "".join(traceback.format_exception(caught.value))
    for leaked in (token, token[:20], plaintext):
        assert leaked not in message
        assert leaked not in rendered
    with pytest.raises(DecryptionError) as caught:
        decrypt_json("not-a-token-" + plaintext, job_id="x")
    assert plaintext not in "".join(traceback.format_exception(caught.value))


# -- rotation ------------------------------------------------------------------------------------


def test_rotate_then_retire(sqlite_env: Path) -> None:
    path = sqlite_env / "fernet.key"
    save_jobs()
    (old_key,) = key_lines(path)
    before = stored_tokens()

    assert rotate_key(reencrypt_in_db) == len(SECRETS)

    keys = key_lines(path)
    assert len(keys) == 2 and keys[1] == old_key and keys[0] != old_key
    assert mode(path) == 0o600
    after = stored_tokens()
    newest = Fernet(keys[0].encode())
    for job_id in SECRETS:
        assert after[job_id] != before[job_id]
        newest.decrypt(after[job_id].encode())  # readable by the new key alone
        assert decrypt_json(before[job_id]) == SECRETS[job_id]  # the old key still reads
    assert_all_secrets_decrypt()

    assert retire_old_keys(list(after.values())) == 1
    assert key_lines(path) == keys[:1]
    assert mode(path) == 0o600
    assert_all_secrets_decrypt()
    with pytest.raises(DecryptionError):
        decrypt_json(before["alpha"], job_id="alpha")  # the old key is really gone
    assert retire_old_keys(list(after.values())) == 0


def test_retire_refused_while_a_token_needs_the_old_key(sqlite_env: Path) -> None:
    path = sqlite_env / "fernet.key"
    save_jobs()
    # A rotation that added the key but re-encrypted nothing (as if interrupted).
    assert rotate_key(lambda rotate: 0) == 0
    keys = key_lines(path)
    assert len(keys) == 2
    with pytest.raises(KeyUnusableError, match="rotate-key"):
        retire_old_keys(list(stored_tokens().values()))
    assert key_lines(path) == keys
    assert_all_secrets_decrypt()


ROTATE_SCRIPT = """
import sys, time
from pathlib import Path
from connecthub.db import crud
from connecthub.db.engine import session_scope
from connecthub.security import fernet

write_keys = fernet._write_keys

def slow_write_keys(path, keys, *, replace):
    time.sleep(0.2)  # widen the window between reading the key file and replacing it
    return write_keys(path, keys, replace=replace)

fernet._write_keys = slow_write_keys

ready, go, sleep = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
ready.touch()
while not go.exists():  # spin: both rotations start within microseconds of each other
    pass

def reencrypt(rotate):
    with session_scope() as session:
        count = crud.reencrypt_secrets(session, rotate)
        time.sleep(sleep)  # inside the transaction, before the commit
        return count

print(fernet.rotate_key(reencrypt))
"""


def test_two_rotations_at_once_lose_nothing(sqlite_env: Path, tmp_path: Path) -> None:
    path = sqlite_env / "fernet.key"
    save_jobs()
    (old_key,) = key_lines(path)
    before = stored_tokens()
    go = tmp_path / "go"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", ROTATE_SCRIPT, str(tmp_path / f"ready{i}"), str(go), "0.5"],
            cwd=tmp_path, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    for i, process in enumerate(processes):
        wait_for(tmp_path / f"ready{i}", process)
    go.touch()
    for process in processes:
        out, err = process.communicate(timeout=PROCESS_TIMEOUT)
        assert process.returncode == 0, err
        assert out.strip() == str(len(SECRETS))
    keys = key_lines(path)
    assert len(keys) == 3 and keys[2] == old_key and len(set(keys)) == 3
    after = stored_tokens()
    newest = Fernet(keys[0].encode())
    for job_id in SECRETS:
        assert after[job_id] != before[job_id]
        newest.decrypt(after[job_id].encode())
    assert_all_secrets_decrypt()
    assert retire_old_keys(list(after.values())) == 2
    assert_all_secrets_decrypt()


KILLED_SCRIPT = """
import sys, time
from pathlib import Path
from connecthub.db import crud
from connecthub.db.engine import session_scope
from connecthub.security.fernet import rotate_key

midway = Path(sys.argv[1])

def reencrypt(rotate):
    with session_scope() as session:
        count = crud.reencrypt_secrets(session, rotate)
        midway.write_text(str(count))
        time.sleep(120)  # killed here, inside the transaction
        return count

rotate_key(reencrypt)
"""


def test_rotation_killed_half_way_loses_nothing(sqlite_env: Path, tmp_path: Path) -> None:
    path = sqlite_env / "fernet.key"
    save_jobs()
    (old_key,) = key_lines(path)
    before = stored_tokens()
    midway = tmp_path / "midway"
    process = subprocess.Popen(
        [sys.executable, "-c", KILLED_SCRIPT, str(midway)], cwd=tmp_path, env=child_env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_for(midway, process)
        assert midway.read_text() == str(len(SECRETS))  # it had rewritten every row
        os.kill(process.pid, signal.SIGKILL)
        process.communicate(timeout=PROCESS_TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL

    keys = key_lines(path)
    assert len(keys) == 2 and keys[1] == old_key  # the new key was written before the kill
    assert stored_tokens() == before  # the transaction never committed
    assert_all_secrets_decrypt()
    check_key_usable(list(before.values()))
    with pytest.raises(KeyUnusableError):
        retire_old_keys(list(before.values()))

    # Running the rotation again completes it.
    assert rotate_key(reencrypt_in_db) == len(SECRETS)
    assert retire_old_keys(list(stored_tokens().values())) == 2
    assert len(key_lines(path)) == 1
    assert_all_secrets_decrypt()
    with pytest.raises(InvalidToken):
        Fernet(old_key.encode()).decrypt(stored_tokens()["alpha"].encode())


def test_load_keys_without_create_does_not_create(sqlite_env: Path) -> None:
    path = sqlite_env / "fernet.key"
    with pytest.raises(KeyUnusableError, match="does not exist"):
        load_keys(create=False)
    assert not path.exists()
