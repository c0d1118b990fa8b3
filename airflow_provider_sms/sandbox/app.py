"""The sandbox gateway as an ASGI app: both vendors' endpoints plus the ``/_sandbox`` control API."""

from __future__ import annotations

import time
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.routing import Route

from airflow_provider_sms.sandbox import ihuyi, juncdt
from airflow_provider_sms.sandbox.asgi import install_log_filter, read_body, send_plain
from airflow_provider_sms.sandbox.control import control_routes
from airflow_provider_sms.sandbox.faults import Runtime, serve
from airflow_provider_sms.sandbox.state import SandboxState

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from starlette.types import Receive, Scope, Send


class IhuyiEndpoint:
    """``POST /webservice/api?method=...``: a raw ASGI app, no Request/Response objects per call."""

    def __init__(self, state: SandboxState, runtime: Runtime) -> None:
        self.state = state
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        at = time.time()
        body = await read_body(receive)
        call = ihuyi.parse(scope.get("query_string", b""), body)
        if call is None:
            await send_plain(send, 404, "Not Found")
            return
        state = self.state
        record = state.log_request("ihuyi", call.method, call.numbers, at)
        await serve(state, self.runtime, record, lambda: ihuyi.process(state, call), receive, send)


class JuncdtEndpoint:
    """``POST /smartmarket/msgService/sendMessage``: a raw ASGI app, like :class:`IhuyiEndpoint`."""

    def __init__(self, state: SandboxState, runtime: Runtime) -> None:
        self.state = state
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        at = time.time()
        call = juncdt.parse(await read_body(receive))
        state = self.state
        record = state.log_request("juncdt", juncdt.METHOD, call.numbers, at)
        await serve(state, self.runtime, record, lambda: juncdt.process(state, call), receive, send)


def create_app(state: SandboxState | None = None) -> Starlette:
    """Build the app around ``state`` (a fresh default state when None).

    ``app.state.sandbox`` is the live :class:`SandboxState`; ``app.state.runtime`` lets a server
    release hung replies when it stops.
    """
    state = state if state is not None else SandboxState()
    runtime = Runtime()
    install_log_filter()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        runtime.bind()
        install_log_filter()  # after uvicorn configured its loggers
        yield
        runtime.release()

    routes = [
        Route(ihuyi.PATH, IhuyiEndpoint(state, runtime), methods=["POST"]),
        Route(juncdt.PATH, JuncdtEndpoint(state, runtime), methods=["POST"]),
        *control_routes(state),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.sandbox = state
    app.state.runtime = runtime
    return app
