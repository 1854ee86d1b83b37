"""The environment `connecthub worker` gives itself and its runs: the CA bundle of an http:// API.

The bundle's worth (Prefect clients reaching a plain-HTTP server with it) is proven by every
engine test, whose worker and runs use it; here: when it is set, that it is private and loads,
that it leaves an operator's bundle and an https:// API alone, and that it trusts no TLS server.
"""

from __future__ import annotations

import errno
import socket
import ssl
import stat
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from deployments import worker
from deployments.worker import HTTP_API_CA_BUNDLE, http_api_ca_bundle, worker_environment
from tests.support.settings import use_settings


def test_an_http_api_gets_a_private_one_certificate_bundle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PREFECT_API_SSL_CERT_FILE", raising=False)
    use_settings(monkeypatch, DATA_DIR=str(tmp_path), PREFECT_API_URL="http://127.0.0.1:4200/api")
    env = worker_environment()
    bundle = Path(env["PREFECT_API_SSL_CERT_FILE"])
    assert bundle == tmp_path.resolve() / HTTP_API_CA_BUNDLE
    assert stat.S_IMODE(bundle.stat().st_mode) == 0o600
    assert bundle.read_text().count("BEGIN CERTIFICATE") == 1
    context = ssl.create_default_context(cafile=str(bundle))  # what each Prefect client does
    assert context.cert_store_stats()["x509"] == 1
    # Made once: a second worker on the same DATA_DIR uses the same file.
    before = bundle.read_bytes()
    assert worker_environment()["PREFECT_API_SSL_CERT_FILE"] == str(bundle)
    assert bundle.read_bytes() == before


@pytest.mark.parametrize(
    ("api_url", "operator_bundle"),
    [("https://prefect.example.com/api", None), ("http://127.0.0.1:4200/api", "/etc/ca.pem")],
)
def test_an_https_api_or_an_operator_bundle_is_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, api_url: str, operator_bundle: str | None
) -> None:
    if operator_bundle is None:
        monkeypatch.delenv("PREFECT_API_SSL_CERT_FILE", raising=False)
    else:
        monkeypatch.setenv("PREFECT_API_SSL_CERT_FILE", operator_bundle)
    use_settings(monkeypatch, DATA_DIR=str(tmp_path), PREFECT_API_URL=api_url)
    assert worker_environment().get("PREFECT_API_SSL_CERT_FILE") == operator_bundle
    assert not (tmp_path / HTTP_API_CA_BUNDLE).exists()


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1)).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "server.pem", directory / "server.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ))
    return cert_path, key_path


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A TLS server on localhost with a self-signed certificate; yields its port and cert."""
    cert_path, key_path = _self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)

    def serve() -> None:
        for _ in range(2):
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            try:
                with context.wrap_socket(conn, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1], cert_path
    listener.close()
    thread.join(timeout=10)


def _handshake(port: int, context: ssl.SSLContext) -> None:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost"),
    ):
        pass


def test_the_bundle_trusts_no_tls_server(
    tmp_path: Path, tls_server: tuple[int, Path]
) -> None:
    port, server_cert = tls_server
    # The server is reachable and sound: a client that trusts its certificate gets through...
    _handshake(port, ssl.create_default_context(cafile=str(server_cert)))
    # ...and one with the worker's bundle is refused, as with any server it was not told of.
    bundle = http_api_ca_bundle(tmp_path / "data")
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(port, ssl.create_default_context(cafile=str(bundle)))


def test_a_bundle_it_cannot_write_leaves_prefects_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def full_disk(*_: object, **__: object) -> bool:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(worker, "write_private_file", full_disk)
    monkeypatch.delenv("PREFECT_API_SSL_CERT_FILE", raising=False)
    use_settings(monkeypatch, DATA_DIR=str(tmp_path), PREFECT_API_URL="http://127.0.0.1:4200/api")
    assert "PREFECT_API_SSL_CERT_FILE" not in worker_environment()
    assert "No space left on device" in caplog.text
    assert "certifi's roots" in caplog.text


def test_the_workers_settings_environment_is_prefects_computed_once_per_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`deployments.prefect_worker` gives the worker's every run Prefect's own environment of
    its settings, computing it once per settings object; other settings get their own."""
    from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings
    from prefect.settings.base import PrefectBaseSettings
    from prefect.settings.models.root import Settings

    from deployments.prefect_worker import settings_environment

    computed: list[Settings] = []
    prefects = PrefectBaseSettings.to_environment_variables

    def counting(self: PrefectBaseSettings, **kwargs: bool) -> dict[str, str]:
        if isinstance(self, Settings):
            computed.append(self)
        return prefects(self, **kwargs)

    monkeypatch.setattr(PrefectBaseSettings, "to_environment_variables", counting)
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:4200/api"}):
        settings = get_current_settings()
        expected = prefects(settings, exclude_unset=True)
        first = settings_environment(settings, exclude_unset=True)
        first["PREFECT_API_URL"] = "changed by a caller"
        assert settings_environment(settings, exclude_unset=True) == expected
        assert expected["PREFECT_API_URL"] == "http://127.0.0.1:4200/api"
        assert computed == [settings]
        assert settings_environment(settings) == prefects(settings)  # other arguments
        assert len(computed) == 2
        with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:4300/api"}):
            other = get_current_settings()
            assert settings_environment(other, exclude_unset=True)["PREFECT_API_URL"] == (
                "http://127.0.0.1:4300/api"
            )
        assert computed[-1] is other
