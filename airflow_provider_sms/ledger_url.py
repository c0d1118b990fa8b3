"""The ledger's database as a user gives it (an Airflow connection, or a URL in its ``sqlalchemy_url``
extra), turned into the SQLAlchemy URL the ledger opens, with its password registered as a secret.
A suppression query's connection without an Airflow provider to read it is opened the same way.

Imports stay light: SQLAlchemy's URL parser only; no database driver is imported here.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING
from urllib.parse import quote

from airflow_provider_sms.errors import InvalidInputError

if TYPE_CHECKING:
    from airflow.sdk import Connection
    from sqlalchemy.engine import URL

# A bare ``postgresql://`` (or ``postgres://``, the form of Heroku-style URLs and of Airflow's URI
# connections) names no driver. SQLAlchemy 2.1 then picks psycopg 3, 2.0 picks psycopg2: a URL that
# works on one fails with "No module named ..." on the other. The ledger uses whichever of the two is
# installed, psycopg2 first: the ``[postgres]`` extra installs it, and so does Airflow's own postgres
# provider, so a worker that has either needs no second driver. A URL naming its driver
# (``postgresql+psycopg://``) is used as written.
POSTGRES_DRIVERS = ("psycopg2", "psycopg")
BACKENDS = ("sqlite", "postgresql")


class LedgerUrlError(ValueError):
    """The database cannot be used as given; the message never quotes the URL, nor says whose it is
    (``ledger_url_from_connection`` names the connection and what it is for)."""


def installed_postgres_driver() -> str | None:
    """The first of ``POSTGRES_DRIVERS`` this Python can import (without importing it), else None."""
    for driver in POSTGRES_DRIVERS:
        try:
            if importlib.util.find_spec(driver) is not None:
                return driver
        except (ImportError, ValueError):  # a broken install, or a module set to None in sys.modules
            continue
    return None


def postgres_drivername() -> str:
    """``postgresql+<driver>`` for the installed driver; an error saying what to install otherwise."""
    driver = installed_postgres_driver()
    if driver is None:
        raise LedgerUrlError(
            "PostgreSQL needs a driver and none is installed: "
            "pip install 'airflow-provider-sms[postgres]' (psycopg2) on every worker, or install psycopg"
        )
    return f"postgresql+{driver}"


def parse(given: str) -> URL:
    """``given`` as a SQLAlchemy URL, or an error that quotes no part of it: SQLAlchemy's own errors
    and the driver's may quote a piece of a password written without percent-encoding."""
    from sqlalchemy.engine import make_url

    try:
        url: URL | None = make_url(given.strip())
    except Exception:  # raised below, outside this block, so that no message is chained to it
        url = None
    if url is None:
        raise LedgerUrlError(
            "its sqlalchemy_url is not a URL SQLAlchemy can read (expected "
            "postgresql://user:password@host:port/database or sqlite:////absolute/path.db); "
            "characters such as / @ : # ? % in the user or password must be percent-encoded (/ as %2F)"
        )
    if "@" in (url.host or ""):
        # An unencoded @ in the password: the password's end would be taken for the host name, and the
        # driver's "could not translate host name" would show it.
        raise LedgerUrlError(
            "its sqlalchemy_url has an @ in its host name: an @ in the user or password must "
            "be percent-encoded as %40"
        )
    return url


def mask(url: URL) -> None:
    """Register the URL's password (as written in a URL, and decoded) and the whole URL with Airflow's
    secret masker: Airflow masks a connection's extra as a whole, not a password inside one value."""
    from airflow.sdk.log import mask_secret

    secrets = [s for s in (url.password, url.query.get("password")) if isinstance(s, str) and s]
    for secret in secrets:
        mask_secret(secret)
        if (encoded := quote(secret, safe="")) != secret:
            mask_secret(encoded)
    if secrets:  # a URL without one (a SQLite file's) stays readable in the log
        mask_secret(url.render_as_string(hide_password=False))


def ledger_url(given: str) -> str:
    """The URL the ledger opens, from a SQLite or PostgreSQL URL in any documented form: ``sqlite:///``,
    ``postgresql://``, ``postgres://``, ``postgresql+psycopg2://``, ``postgresql+psycopg://``."""
    url = parse(given)
    mask(url)
    dialect, _, driver = url.drivername.partition("+")
    if dialect == "postgres":  # SQLAlchemy dropped this alias; Airflow's URI connections still use it
        dialect = "postgresql"
    if dialect not in BACKENDS:
        raise LedgerUrlError(f"only SQLite and PostgreSQL URLs can be opened, not {dialect!r}")
    if dialect == "postgresql":
        url = url.set(drivername=f"{dialect}+{driver}" if driver else postgres_drivername())
    return url.render_as_string(hide_password=False)


def ledger_url_from_connection(conn_id: str, conn: Connection, *, role: str = "ledger") -> str:
    """SQLAlchemy URL of a ledger connection: postgres, sqlite, or a PostgreSQL/SQLite ``sqlalchemy_url``
    extra (the ledger's claim relies on their ``INSERT ... ON CONFLICT``). A PostgreSQL URL without a
    driver gets the installed one (above); the password is masked. ``role`` names the connection in
    errors: a user who set only a suppression query must not read of a ledger."""
    from airflow.sdk.log import mask_secret
    from sqlalchemy.engine import URL

    if conn.password:
        mask_secret(conn.password)
    extra = conn.extra_dejson if conn.extra else {}
    try:
        if isinstance(extra, dict) and extra.get("sqlalchemy_url"):
            return ledger_url(str(extra["sqlalchemy_url"]))
        if conn.conn_type == "sqlite":
            return ledger_url(f"sqlite:///{conn.host}")
        if conn.conn_type not in ("postgres", "postgresql"):
            other = "" if role == "ledger" else ", or install the Airflow provider of that database"
            raise InvalidInputError(
                f"{role} connection {conn_id!r} of type {conn.conn_type!r} is not supported; use postgres "
                f"or sqlite, or set extra 'sqlalchemy_url' to a PostgreSQL or SQLite URL{other}"
            )
        url = URL.create(
            postgres_drivername(),
            username=conn.login,
            password=conn.password,
            host=conn.host,
            port=conn.port,
            database=conn.schema,
        )
    except LedgerUrlError as exc:
        raise InvalidInputError(f"{role} connection {conn_id!r}: {exc}") from None
    mask(url)  # the password as the URL writes it (percent-encoded), not only as the connection holds it
    return url.render_as_string(hide_password=False)
