"""Run the sandbox gateway with uvicorn: in a background thread for tests, or in the foreground."""

from __future__ import annotations

import importlib.util
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

import uvicorn

from airflow_provider_sms.sandbox.app import create_app, gateway_first
from airflow_provider_sms.sandbox.state import SandboxState

if TYPE_CHECKING:
    from types import TracebackType

    from starlette.applications import Starlette

    from airflow_provider_sms.sandbox.faults import Runtime

TlsFiles = tuple[str, str]  # certificate and private key, PEM files


def uvicorn_config(app: Any, *, log_config: Any = None, tls: TlsFiles | None = None) -> uvicorn.Config:
    """uvicorn settings of the sandbox: the fastest loop and parser installed, no access log; HTTPS
    with ``tls`` (a certificate and its key, PEM files).

    ``timeout_graceful_shutdown=1`` so a hung request never holds a stop for long.
    """
    fast = importlib.util.find_spec("uvloop") is not None
    parser = importlib.util.find_spec("httptools") is not None
    return uvicorn.Config(
        app,
        loop="uvloop" if fast else "asyncio",
        http="httptools" if parser else "h11",
        access_log=False,
        proxy_headers=False,  # nothing stands in front of the sandbox: one middleware less per request
        log_level="warning",
        log_config=log_config,
        timeout_keep_alive=30,
        timeout_graceful_shutdown=1,
        lifespan="on",
        ssl_certfile=tls[0] if tls else None,
        ssl_keyfile=tls[1] if tls else None,
    )


class _Uvicorn(uvicorn.Server):
    """uvicorn that releases hung replies as its shutdown begins (on a signal too), not after the
    graceful timeout: stopping stays quick and quiet."""

    def __init__(self, config: uvicorn.Config, runtime: Runtime) -> None:
        super().__init__(config)
        self.runtime = runtime

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.runtime.release()
        await super().shutdown(sockets)


def uvicorn_server(app: Starlette, *, log_config: Any = None, tls: TlsFiles | None = None) -> uvicorn.Server:
    """A uvicorn server for an app of :func:`create_app`."""
    return _Uvicorn(uvicorn_config(gateway_first(app), log_config=log_config, tls=tls), app.state.runtime)


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind and listen before serving: port 0 resolves to a free port, and the URL works at once
    (connections wait in the backlog until uvicorn accepts them)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


def url_of(host: str, port: int, *, tls: bool = False) -> str:
    scheme = "https" if tls else "http"
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


class SandboxServer:
    """The sandbox on a real loopback socket, served by uvicorn in a background thread.

    ``start()`` returns once it accepts connections; ``stop()`` returns within a couple of seconds
    even while requests hang (they are released first). ``state`` is the live state, which
    in-process tests may inspect or alter directly between requests; ``record`` applies only
    when no state is given. With ``tls`` (certificate and key PEM files) it serves HTTPS.
    """

    def __init__(
        self,
        state: SandboxState | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        record: bool = True,
        start_timeout: float = 10.0,
        tls: TlsFiles | None = None,
    ) -> None:
        self.state = state if state is not None else SandboxState(record=record)
        self.host = host
        self._requested_port = port
        self._start_timeout = start_timeout
        self.tls = tls
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._runtime: Runtime | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the sandbox is not started")
        return self._port

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321`` (the gateway paths go after it)."""
        return url_of(self.host, self.port, tls=self.tls is not None)

    def start(self) -> SandboxServer:
        """Serve in a daemon thread; return when ready (RuntimeError if it fails to start)."""
        if self._thread is not None:
            raise RuntimeError("the sandbox is already started")
        app = create_app(self.state)
        self._runtime = app.state.runtime
        sock = bind_socket(self.host, self._requested_port)
        self._port = int(sock.getsockname()[1])
        server = uvicorn_server(app, tls=self.tls)
        self._server = server
        self._thread = threading.Thread(
            target=self._run, args=(server, sock), name=f"sms-sandbox-{self._port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + self._start_timeout
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the sandbox gateway did not start")
            time.sleep(0.01)
        return self

    @staticmethod
    def _run(server: uvicorn.Server, sock: socket.socket) -> None:
        try:
            server.run(sockets=[sock])
        finally:
            sock.close()

    def stop(self) -> None:
        """Release hung replies, shut uvicorn down and wait for its thread."""
        server, thread = self._server, self._thread
        if self._runtime is not None:
            self._runtime.release()
        if server is not None:
            server.should_exit = True
        if thread is not None:
            thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.url if self._port is not None else "not started"
        return f"SandboxServer({where})"
