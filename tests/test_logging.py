"""Masking of the running job's secrets: in records of every logger (ConnectHub's, a plugin's,
Prefect's), in args-formatted messages, in tracebacks, in print() output, in base64 forms; and
no masking once the block has ended."""

from __future__ import annotations

import base64
import logging
import sys
from collections.abc import Iterator

import pytest
from prefect.logging import get_logger

from connecthub.core.logging import MASK, mask, secrets_masked

SECRET = "sk_live_mask_me?>>~+/7f3a"  # base64 and urlsafe base64 of it differ
PASSWORD = "pa55-w0rd-hunter2"
PIN = 4815162342
SECRETS = {"token": SECRET, "db": {"password": PASSWORD}, "pins": [PIN], "short": "ab"}


class Capture(logging.Handler):
    """Collects records and their formatted text, as a real handler would write them."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.records: list[logging.LogRecord] = []
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.lines.append(self.format(record))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


LOGGER_NAMES = ["connecthub.flows", "extensions.example.job", "my_plugin", "prefect.flow_runs"]


@pytest.fixture
def capture() -> Iterator[Capture]:
    handler = Capture()
    loggers = [logging.getLogger(name) for name in LOGGER_NAMES]
    loggers.append(get_logger("task_runs"))  # Prefect's own logger factory
    saved = [(logger, logger.level) for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    yield handler
    for logger, level in saved:
        logger.removeHandler(handler)
        logger.setLevel(level)


def b64_forms(value: str) -> list[str]:
    raw = value.encode()
    forms = [base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()]
    return forms + [form.rstrip("=") for form in forms]


def assert_no_secret(text: str) -> None:
    for value in (SECRET, PASSWORD, str(PIN), *b64_forms(SECRET), *b64_forms(PASSWORD)):
        assert value not in text


def test_the_base64_forms_are_really_different() -> None:
    forms = b64_forms(SECRET)
    assert len(set(forms)) == 4  # padding and the urlsafe alphabet both matter here


@pytest.mark.parametrize("name", [*LOGGER_NAMES, "prefect.task_runs"])
def test_records_of_every_logger_are_masked(capture: Capture, name: str) -> None:
    logger = logging.getLogger(name)
    with secrets_masked(SECRETS):
        logger.info("token %s for %s", SECRET, "crm")
        logger.warning("secrets are %r", SECRETS)
        logger.error(f"password={PASSWORD} pin={PIN}")
        logger.debug("%(token)s", {"token": SECRET})
    assert len(capture.records) == 4
    assert_no_secret(capture.text)
    assert f"token {MASK} for crm" in capture.lines[0]
    assert f"password={MASK} pin={MASK}" in capture.lines[2]
    for record in capture.records:
        assert record.args is None or record.args == ()
        assert_no_secret(str(record.msg))
        assert_no_secret(record.getMessage())
    assert "'short': 'ab'" in capture.lines[1]  # too short to mask without masking every word


def test_base64_forms_are_masked(capture: Capture) -> None:
    logger = logging.getLogger("my_plugin")
    with secrets_masked(SECRETS):
        for form in b64_forms(SECRET) + b64_forms(PASSWORD):
            logger.info("Authorization: Bearer %s", form)
        print(f"basic {base64.b64encode(PASSWORD.encode()).decode()}")
    assert_no_secret(capture.text)
    assert capture.text.count(MASK) == 8


def test_longest_value_is_masked_whole(capture: Capture) -> None:
    with secrets_masked({"short": "abcdef", "long": "abcdef-and-more"}):
        logging.getLogger("my_plugin").info("value abcdef-and-more, and abcdef")
        assert mask("abcdef-and-more") == MASK
    assert capture.lines == [f"my_plugin INFO value {MASK}, and {MASK}"]


def test_exception_tracebacks_are_masked(capture: Capture) -> None:
    logger = logging.getLogger("extensions.example.job")
    with secrets_masked(SECRETS):
        try:
            raise RuntimeError(f"remote refused token {SECRET}")
        except RuntimeError:
            logger.exception("call failed with %s", PASSWORD)
        try:
            raise ValueError(PASSWORD)
        except ValueError as error:
            logging.getLogger("prefect.flow_runs").error("failed", exc_info=error)
    assert_no_secret(capture.text)
    first, second = capture.records
    assert first.exc_text is not None
    assert f"RuntimeError: remote refused token {MASK}" in first.exc_text
    assert "Traceback (most recent call last)" in first.exc_text
    assert f"call failed with {MASK}" in capture.lines[0]
    assert f"ValueError: {MASK}" in capture.lines[1]
    assert_no_secret(second.exc_text or "")


def test_print_to_stdout_and_stderr_is_masked(capsys: pytest.CaptureFixture[str]) -> None:
    stdout = sys.stdout
    with secrets_masked(SECRETS):
        print(f"printing the token {SECRET}")
        print("password", PASSWORD, "pin", PIN)
        print(f"to stderr {SECRET}", file=sys.stderr)
        sys.stdout.write(f"written {base64.urlsafe_b64encode(SECRET.encode()).decode()}\n")
    assert sys.stdout is stdout  # restored
    out, err = capsys.readouterr()
    assert_no_secret(out + err)
    assert f"printing the token {MASK}" in out
    assert f"password {MASK} pin {MASK}" in out
    assert f"written {MASK}" in out
    assert f"to stderr {MASK}" in err


def test_nothing_is_masked_after_the_block(
    capture: Capture, capsys: pytest.CaptureFixture[str]
) -> None:
    logger = logging.getLogger("my_plugin")
    with secrets_masked(SECRETS):
        assert mask(f"x {SECRET} y") == f"x {MASK} y"
    logger.info("token %s", SECRET)
    print(f"token {SECRET}")
    assert mask(SECRET) == SECRET
    assert capture.lines == [f"my_plugin INFO token {SECRET}"]
    assert capsys.readouterr().out == f"token {SECRET}\n"


def test_masking_ends_only_for_the_block_that_ends(capture: Capture) -> None:
    logger = logging.getLogger("my_plugin")
    with secrets_masked({"token": SECRET}):
        with secrets_masked({"other": PASSWORD}):
            logger.info("inner %s %s", SECRET, PASSWORD)
        logger.info("outer %s %s", SECRET, PASSWORD)
    assert capture.lines == [
        f"my_plugin INFO inner {MASK} {MASK}",
        f"my_plugin INFO outer {MASK} {PASSWORD}",
    ]


def test_nested_blocks_sharing_a_value_keep_it_masked(capture: Capture) -> None:
    """Two jobs with the same credential (or a job that masks its secrets again in a helper):
    when the inner block ends, the outer one is still running and its secret must stay masked."""
    logger = logging.getLogger("my_plugin")
    with secrets_masked({"token": SECRET}):
        with secrets_masked({"token": SECRET}):
            logger.info("inner %s", SECRET)
        logger.info("outer %s", SECRET)
    assert capture.lines == [f"my_plugin INFO inner {MASK}", f"my_plugin INFO outer {MASK}"]


def test_mask_without_secrets_is_identity() -> None:
    assert mask(f"plain {SECRET}") == f"plain {SECRET}"
    assert mask("") == ""
    with secrets_masked(None):
        assert mask(f"plain {SECRET}") == f"plain {SECRET}"
