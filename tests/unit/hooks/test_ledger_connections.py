"""A ledger connection in each documented form, through real task runs on the suite's PostgreSQL.

The mapped example DAG sends with ``ledger_conn_id``: each form below must run the campaign end to
end (the outcomes land in PostgreSQL), and the connection's password must never reach the log.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_sms.sandbox.server import SandboxServer
from tests.helpers import deliveries, raises, run_dag

pytestmark = pytest.mark.usefixtures("airflow_db")

PASSWORD = "Ledger-pw-7Q2x"  # the suite's server trusts loopback: any password is let in
HASH_KEY = "ledger-connection-hash-key-0123456789"  # every worker of a shared ledger hashes with it


def server_address(postgres_url: str) -> tuple[str, int, str, str]:
    from sqlalchemy.engine import make_url

    url = make_url(postgres_url)
    assert url.host and url.port and url.database and url.username
    return url.host, url.port, url.database, url.username


def ledger_rows(postgres_url: str, campaign: str) -> dict[str, int]:
    import psycopg2

    host, port, database, user = server_address(postgres_url)
    with psycopg2.connect(host=host, port=port, dbname=database, user=user) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT status, count(*) FROM sms_ledger_entries WHERE campaign = %s GROUP BY status", (campaign,)
        )
        return dict(cur.fetchall())


@pytest.fixture
def mapped_campaign(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """The mapped example, its chunks under ``tmp_path`` (the ``sms_chunk_base`` Variable), its ledger
    the connection ``sms_ledger``."""
    monkeypatch.setenv("AIRFLOW_VAR_SMS_CHUNK_BASE", f"file://{tmp_path}/chunks")
    monkeypatch.setenv("SMS_EXAMPLE_LEDGER_CONN_ID", "sms_ledger")
    yield tmp_path


def connection_forms(host: str, port: int, database: str, user: str) -> dict[str, str]:
    """Each form a user may give, as the value of ``AIRFLOW_CONN_SMS_LEDGER``."""
    address = f"{host}:{port}/{database}"
    return {
        # SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3, which the [postgres] extra does not install.
        "sqlalchemy_url postgresql://": json.dumps(
            {
                "conn_type": "generic",
                "extra": {
                    "sqlalchemy_url": f"postgresql://{user}:{PASSWORD}@{address}",
                    "hash_key": HASH_KEY,
                },
            }
        ),
        "sqlalchemy_url postgres://": json.dumps(
            {
                "conn_type": "generic",
                "extra": {"sqlalchemy_url": f"postgres://{user}:{PASSWORD}@{address}", "hash_key": HASH_KEY},
            }
        ),
        "sqlalchemy_url postgresql+psycopg2://": json.dumps(
            {
                "conn_type": "generic",
                "extra": {
                    "sqlalchemy_url": f"postgresql+psycopg2://{user}:{PASSWORD}@{address}",
                    "hash_key": HASH_KEY,
                },
            }
        ),
        # Airflow's URI form: the connection's type is postgres.
        "postgres connection, URI form": f"postgresql://{user}:{PASSWORD}@{address}?hash_key={HASH_KEY}",
        # A password with characters a URL must encode: the ledger's URL encodes them, the log masks both.
        "postgres connection, JSON form": json.dumps(
            {
                "conn_type": "postgres",
                "host": host,
                "port": port,
                "schema": database,
                "login": user,
                "password": PASSWORD + "@/:",
                "extra": {"hash_key": HASH_KEY},
            }
        ),
    }


FORMS = list(connection_forms("h", 1, "d", "u"))


@pytest.mark.parametrize("form", FORMS)
def test_each_form_of_ledger_connection_runs_a_campaign_on_postgres(
    form: str,
    connections: SandboxServer,
    postgres_url: str,
    mapped_campaign: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_SMS_LEDGER", connection_forms(*server_address(postgres_url))[form])
    result = run_dag("example_sms_mapped_campaign")
    assert result.state == "success", result.tasks
    summaries = [result.xcom("send_chunk", map_index=i) for i in range(3)]
    assert sum(s["accepted"] for s in summaries) == 320
    assert sum(s["skipped"] for s in summaries) == 40  # one campaign across the chunks: the overlap once
    sent = [d["number"] for d in deliveries(connections, "juncdt")]
    assert len(sent) == len(set(sent)) == 320
    assert ledger_rows(postgres_url, summaries[0]["campaign"]) == {"accepted": 320}
    # The chunks went where the sms_chunk_base Variable says, and were read back from there.
    assert len(list((mapped_campaign / "chunks").glob("*/part-*.csv"))) == 3
    log = "".join(capfd.readouterr())
    assert "send_chunk" in log and PASSWORD not in log


def test_a_password_with_an_unencoded_at_sign_fails_without_showing_it(
    connections: SandboxServer,
    postgres_url: str,
    mapped_campaign: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """``user:Front@Tail@host``: the driver would read ``Tail@host`` as the host name and say it cannot
    resolve it, showing the password's end in the task's log."""
    host, port, database, user = server_address(postgres_url)
    url = f"postgresql+psycopg2://{user}:Front7pw@Tail9secret@{host}:{port}/{database}"
    monkeypatch.setenv(
        "AIRFLOW_CONN_SMS_LEDGER",
        json.dumps({"conn_type": "generic", "extra": {"sqlalchemy_url": url, "hash_key": HASH_KEY}}),
    )
    monkeypatch.setenv("SMS_EXAMPLE_CHUNKS", "1")
    result = run_dag("example_sms_mapped_campaign")
    assert result.task("send_chunk", 0) == "failed"
    assert deliveries(connections) == []
    log = "".join(capfd.readouterr())
    assert "an @ in the user or password must be percent-encoded as %40" in log
    assert "Tail9secret" not in log and "Front7pw" not in log


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u:pw@db:5432/sms", "postgresql+psycopg2://u:pw@db:5432/sms"),
        ("postgres://u:pw@db/sms?sslmode=require", "postgresql+psycopg2://u:pw@db/sms?sslmode=require"),
        ("postgres+psycopg2://u@db/sms", "postgresql+psycopg2://u@db/sms"),
        ("postgresql+psycopg2://u:p%40w@db/sms", "postgresql+psycopg2://u:p%40w@db/sms"),
        ("postgresql+psycopg://u@db/sms", "postgresql+psycopg://u@db/sms"),  # a driver named: as written
        ("sqlite:////var/lib/sms/ledger.db", "sqlite:////var/lib/sms/ledger.db"),
        (" sqlite:///ledger.db ", "sqlite:///ledger.db"),
    ],
)
def test_the_url_the_ledger_opens(given: str, expected: str) -> None:
    from airflow_provider_sms.ledger_url import ledger_url

    assert ledger_url(given) == expected


@pytest.mark.parametrize(
    ("given", "error"),
    [
        ("mysql://u:pw@db/sms", "SQLite and PostgreSQL URLs can be opened, not 'mysql'"),
        ("postgresql://u:pw@db:port/sms", "not a URL SQLAlchemy can read"),
        ("not a url", "not a URL SQLAlchemy can read"),
    ],
)
def test_a_url_the_ledger_cannot_use(given: str, error: str) -> None:
    from airflow_provider_sms.ledger_url import LedgerUrlError, ledger_url

    with raises(LedgerUrlError, match=error) as caught:
        ledger_url(given)
    assert "pw" not in str(caught.value) and caught.value.__cause__ is None


def test_without_a_postgres_driver_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_sms.ledger_url import LedgerUrlError, ledger_url

    for driver in ("psycopg2", "psycopg"):  # None in sys.modules: what `import` sees when it is absent
        monkeypatch.setitem(sys.modules, driver, None)
    with raises(LedgerUrlError, match=r"pip install 'airflow-provider-sms\[postgres\]'"):
        ledger_url("postgresql://u@db/sms")


def test_a_postgres_connection_gets_the_installed_driver_and_its_password_is_masked_as_encoded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Airflow masks the connection's password as stored (``p@ss/w:rd-9``); the URL writes it encoded."""
    from airflow.sdk.log import redact

    from airflow_provider_sms.hooks.ledger import SmsLedgerHook

    conn = {"conn_type": "postgres", "host": "db", "login": "u", "password": "p@ss/w:rd-9", "port": 5432}
    extra = {"hash_key": HASH_KEY}
    monkeypatch.setenv(
        "AIRFLOW_CONN_LEDGER_PG_ENCODED", json.dumps({**conn, "schema": "sms", "extra": extra})
    )
    url, _ = SmsLedgerHook("ledger_pg_encoded").url_and_key()
    assert url == "postgresql+psycopg2://u:p%40ss%2Fw%3Ard-9@db:5432/sms"
    assert "ss" not in str(redact(f"connecting to {url}"))


def test_a_password_in_a_sqlalchemy_url_is_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Airflow masks a connection's extra as a whole, not a password inside one of its values."""
    from airflow.sdk.log import redact

    from airflow_provider_sms.hooks.ledger import SmsLedgerHook

    extra = {"sqlalchemy_url": "postgres://u:Url-secret%2F42@db/sms", "hash_key": HASH_KEY}
    monkeypatch.setenv("AIRFLOW_CONN_LEDGER_URL_MASKED", json.dumps({"conn_type": "generic", "extra": extra}))
    SmsLedgerHook("ledger_url_masked").url_and_key()
    shown = str(redact("postgres://u:Url-secret%2F42@db/sms, password Url-secret/42"))
    assert "secret" not in shown
