"""HTTPS gateways: the certificate is verified unless the connection turns it off (``verify_tls``), and
an untrusted one is refused, with the reason, before anything is sent. The sandbox serves HTTPS with a
self-signed certificate made here."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_sms.dispatch.settings import SendSettings
from airflow_provider_sms.errors import InvalidInputError, TransportError
from airflow_provider_sms.hooks.ihuyi import IhuyiHook
from airflow_provider_sms.hooks.juncdt import JuncdtHook
from airflow_provider_sms.sandbox.server import SandboxServer
from tests.helpers import ihuyi_conn, juncdt_conn, raises, set_conn

UNTRUSTED = "certificate verify failed: self-signed certificate"


def self_signed_certificate(directory: Path) -> tuple[str, str]:
    """A certificate for 127.0.0.1 signed by its own key (PEM files): what no client trusts."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sms sandbox")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return str(cert_file), str(key_file)


@pytest.fixture(scope="module")
def https_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxServer]:
    with SandboxServer(tls=self_signed_certificate(tmp_path_factory.mktemp("tls"))) as server:
        yield server


def certificate_of(server: SandboxServer) -> str:
    assert server.tls is not None
    return server.tls[0]


@pytest.fixture
def https(https_sandbox: SandboxServer) -> SandboxServer:
    """The HTTPS sandbox, reset to its defaults."""
    assert https_sandbox.url.startswith("https://127.0.0.1:")
    https_sandbox.state.reset()
    return https_sandbox


def test_an_untrusted_certificate_is_refused_before_anything_is_sent(
    https: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_conn(monkeypatch, "juncdt_default", juncdt_conn(https.url))
    set_conn(monkeypatch, "ihuyi_default", ihuyi_conn(https.url))
    with raises(TransportError, match=UNTRUSTED) as sync:
        JuncdtHook().send_sms("13800138000", "TPL_CODE", {"code": "1"})
    assert "before the request was sent" in str(sync.value) and not sync.value.ambiguous
    with raises(TransportError, match=UNTRUSTED) as balance:
        IhuyiHook().get_balance()
    assert not balance.value.ambiguous
    ok, message = JuncdtHook().test_connection()
    assert not ok and UNTRUSTED in message
    # The bulk path (aiohttp): one attempt, the campaign fails with the reason in its summary.
    summary = JuncdtHook().send_bulk(
        ["13800138000", "13900139000"], "TPL_CODE", {"code": "1"}, bulk=SendSettings(max_attempts=1)
    )
    assert summary.counts["failed"] == 2 and summary.counts["accepted"] == 0
    assert any(UNTRUSTED in reason for reason in summary.reasons), summary.reasons
    assert https.state.requests == [] and https.state.deliveries == []


def test_verify_tls_false_reaches_a_gateway_whose_certificate_is_not_trusted(
    https: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_conn(monkeypatch, "juncdt_default", juncdt_conn(https.url, verify_tls=False))
    set_conn(monkeypatch, "ihuyi_default", ihuyi_conn(https.url, verify_tls=False))
    assert JuncdtHook().send_sms("13800138000", "TPL_CODE", {"code": "1"}).ok
    assert IhuyiHook().get_balance() > 0
    summary = JuncdtHook().send_bulk(["13900139000", "13700137000"], "TPL_CODE", {"code": "2"})
    assert summary.counts["accepted"] == 2
    sent = sorted(d.number for d in https.state.deliveries)
    assert sent == ["13700137000", "13800138000", "13900139000"]


def test_a_ca_bundle_makes_a_private_certificate_trusted(
    https: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca_bundle = certificate_of(https)  # the self-signed certificate is its own CA
    set_conn(monkeypatch, "juncdt_default", juncdt_conn(https.url, ca_bundle=ca_bundle))
    set_conn(monkeypatch, "ihuyi_default", ihuyi_conn(https.url, ca_bundle=ca_bundle))
    assert JuncdtHook().send_sms("13800138000", "TPL_CODE", {"code": "1"}).ok
    assert JuncdtHook().send_bulk(["13900139000"], "TPL_CODE", {"code": "2"}).counts["accepted"] == 1
    assert IhuyiHook().get_balance() > 0
    assert len(https.state.deliveries) == 2


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        ({"ca_bundle": "/nonexistent/ca.pem"}, "extra 'ca_bundle' must be the path of a PEM file"),
        ({"verify_tls": "flase"}, "extra 'verify_tls' must be true or false, got 'flase'"),
    ],
)
def test_a_bad_tls_setting_is_refused_before_anything_is_sent(
    https: SandboxServer, monkeypatch: pytest.MonkeyPatch, extra: dict[str, str], error: str
) -> None:
    set_conn(monkeypatch, "juncdt_default", juncdt_conn(https.url, **extra))
    with raises(InvalidInputError, match=error):
        JuncdtHook().send_sms("13800138000", "TPL_CODE", {"code": "1"})
    ok, message = JuncdtHook().test_connection()  # what the UI's Test button shows
    assert not ok and error in message
    assert https.state.requests == []
