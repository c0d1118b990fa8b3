"""A throwaway Redis server for the Celery scenario (the broker between the scheduler and the workers).

``RedisServer(folder).start()`` runs ``redis-server`` on 127.0.0.1 (free port, no persistence) as a
component of the test, its log in ``folder``. The binary is ``$REDIS_SERVER``, ``redis-server`` on
PATH, or the copy ``make redis`` unpacks from Debian's packages into ``.cache/redis`` (no root needed:
``apt-get download`` and ``dpkg -x``; the libraries it needs are unpacked beside it).
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path

from tests.integration.components import ROOT, Process, stop_all
from tests.pgserver import free_port

CACHE = ROOT / ".cache" / "redis"
INSTALL_HINT = (
    "redis-server was not found ($REDIS_SERVER, PATH, or .cache/redis from `make redis`). Run `make redis` "
    "(it unpacks Debian's redis-server package into .cache/redis), or install Redis yourself "
    "('apt-get install redis-server', 'brew install redis'), or set REDIS_SERVER to its path."
)


class RedisUnavailable(RuntimeError):
    """No redis-server binary here; the message says how to get one."""


def find_redis() -> tuple[Path, dict[str, str]] | None:
    """The redis-server binary and the environment it needs (the unpacked copy's library folder)."""
    if given := os.environ.get("REDIS_SERVER"):
        return Path(given), {}
    if found := shutil.which("redis-server"):
        return Path(found), {}
    unpacked = CACHE / "usr" / "bin" / "redis-server"
    if os.access(unpacked, os.X_OK):
        libs = [str(p) for p in sorted((CACHE / "usr" / "lib").glob("*-linux-gnu"))]
        libs += [os.environ["LD_LIBRARY_PATH"]] if os.environ.get("LD_LIBRARY_PATH") else []
        return unpacked, {"LD_LIBRARY_PATH": os.pathsep.join(libs)}
    return None


class RedisServer:
    """``redis-server`` on 127.0.0.1 with nothing saved to disk; ``url`` is a Celery broker URL."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = 0
        self.process: Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 30) -> RedisServer:
        found = find_redis()
        if found is None:
            raise RedisUnavailable(INSTALL_HINT)
        binary, extra_env = found
        self.port = free_port()
        argv = [str(binary), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
        self.process = Process("redis", [*argv, "no", "--dir", str(self.folder)], self.folder / "redis.log")
        self.process.start({**os.environ, **extra_env}, self.folder)
        deadline = time.monotonic() + timeout
        while not self.ping():
            if not self.process.alive() or time.monotonic() > deadline:
                self.stop()
                log = (self.folder / "redis.log").read_text(errors="replace")[-2000:]
                raise RedisUnavailable(f"redis-server did not answer on port {self.port}:\n{log}")
            time.sleep(0.1)
        return self

    def ping(self) -> bool:
        """Redis answers PING (its inline protocol) on its port."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            stop_all([self.process], grace=5)
            self.process = None
