"""A throwaway PostgreSQL server for tests: real database semantics (locks, READ COMMITTED), no mocks.

``with PostgresServer() as pg: pg.url`` runs initdb into a temp dir, starts ``postgres`` on 127.0.0.1
(free port, unix socket inside the temp dir, fsync off: starts in about a second), creates the database
and removes everything at the end. initdb refuses to run as root, so as root the server runs as the
``postgres`` user (created by Debian's ``postgresql`` package; ``make pg`` installs it).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found on PATH or in "
    "/usr/lib/postgresql/*/bin. Run `make pg` (as root it installs them: apt-get install postgresql), "
    "or install the PostgreSQL server package yourself, or set PG_BINDIR to the directory holding initdb."
)


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server can be started here (binaries missing, or no user to run them as)."""


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", path.parent.parent.name)) or (0,)


def find_bindir() -> Path | None:
    """The directory holding initdb/pg_ctl/postgres: $PG_BINDIR, PATH, else the newest Debian install."""
    candidates: list[Path] = []
    if os.environ.get("PG_BINDIR"):
        candidates.append(Path(os.environ["PG_BINDIR"]) / "initdb")
    if found := shutil.which("initdb"):
        candidates.append(Path(found).resolve())  # a symlink on PATH: its siblings are in the real dir
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=_version_key, reverse=True)
    for initdb in candidates:
        bindir = initdb.parent
        if all(os.access(bindir / name, os.X_OK) for name in ("initdb", "pg_ctl", "postgres")):
            return bindir
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """A private PostgreSQL cluster on 127.0.0.1; ``url`` is a SQLAlchemy URL to its database."""

    user = "postgres"

    def __init__(self, database: str = "sms") -> None:
        self.database = database
        self.port = 0
        self.tmp: Path | None = None
        self._bindir: Path | None = None
        self._prefix: list[str] = []

    @property
    def url(self) -> str:
        if not self.port:
            raise RuntimeError("the PostgreSQL server is not running")
        return f"postgresql+psycopg2://{self.user}@127.0.0.1:{self.port}/{self.database}"

    # ----- lifecycle ------------------------------------------------------------------------------
    def start(self) -> PostgresServer:
        bindir = find_bindir()
        if bindir is None:
            raise PostgresUnavailable(INSTALL_HINT)
        self._bindir = bindir
        if os.geteuid() == 0:  # initdb refuses root: run the cluster as the postgres user
            runuser = shutil.which("runuser")
            try:
                import pwd

                account = pwd.getpwnam("postgres")
            except KeyError:
                account = None
            if runuser is None or account is None:
                raise PostgresUnavailable(
                    "running as root, PostgreSQL must run as the `postgres` user, but "
                    + ("runuser is missing" if runuser is None else "there is no `postgres` user")
                    + ": install the `postgresql` package (it creates the user), or run the tests as non-root"
                )
            self._prefix = [runuser, "-u", "postgres", "--"]
        self.tmp = Path(tempfile.mkdtemp(prefix="sms-pg-"))
        atexit.register(self.stop)
        try:
            if self._prefix:
                shutil.chown(self.tmp, "postgres", "postgres")
            self._run(
                "initdb", "-D", str(self.tmp / "data"), "-U", self.user, "--auth=trust", "--no-sync",
                "--no-instructions", "-E", "UTF8", "--no-locale",
            )  # fmt: skip
            self._start_server()
            self.create_database(self.database)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_server(self) -> None:
        assert self.tmp is not None
        options = " ".join(
            [
                "-c listen_addresses=127.0.0.1",
                f"-c unix_socket_directories={self.tmp}",
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off",
                "-c max_connections=100 -c shared_buffers=64MB",
            ]
        )
        for attempt in range(3):  # the free port may be taken between choosing and binding it
            port = free_port()
            try:
                data, log = str(self.tmp / "data"), str(self.tmp / "server.log")
                self._run(
                    "pg_ctl", "-D", data, "-l", log, "-w", "-t", "30", "-o", f"-p {port} {options}", "start"
                )
            except PostgresUnavailable:
                if attempt == 2:
                    raise
                continue
            self.port = port
            return

    def create_database(self, name: str) -> None:
        """Create database ``name`` on the running server (``url`` names the first one)."""
        import psycopg2  # the test extra installs it; the ledger's PostgreSQL driver

        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user=self.user, dbname="postgres")
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()

    def stop(self) -> None:
        """Stop the server (immediate: its data is thrown away) and remove the temp dir; idempotent."""
        tmp, self.tmp = self.tmp, None
        if tmp is None:
            return
        atexit.unregister(self.stop)
        if (tmp / "data" / "postmaster.pid").exists():
            with contextlib.suppress(PostgresUnavailable):
                self._run("pg_ctl", "-D", str(tmp / "data"), "-m", "immediate", "-w", "stop")
        self.port = 0
        shutil.rmtree(tmp, ignore_errors=True)

    def _run(self, tool: str, *args: str) -> None:
        assert self._bindir is not None
        done = subprocess.run(
            [*self._prefix, str(self._bindir / tool), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd="/",
        )
        if done.returncode != 0:
            log = ""
            if self.tmp is not None and (self.tmp / "server.log").exists():
                log = "\n--- server.log ---\n" + (self.tmp / "server.log").read_text(errors="replace")[-2000:]
            raise PostgresUnavailable(
                f"{tool} failed (exit {done.returncode}): {(done.stderr or done.stdout).strip()[-2000:]}{log}"
            )

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"PostgresServer({self.url if self.port else 'stopped'})"


if __name__ == "__main__":  # manual check: python tests/pgserver.py
    import time

    started = time.monotonic()
    with PostgresServer() as server:
        print(f"{server!r} up in {time.monotonic() - started:.2f}s")
