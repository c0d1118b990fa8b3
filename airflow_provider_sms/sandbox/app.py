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

    from starlette.types import ASGIApp, Receive, Scope, Send


class _Endpoint:
    """A raw ASGI app, no Request/Response objects per call, over the sandbox's state and faults."""

    def __init__(self, state: SandboxState, runtime: Runtime) -> None:
        self.state = state
        self.runtime = runtime


class IhuyiEndpoint(_Endpoint):
    """``POST /webservice/api?method=...``."""

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


class JuncdtEndpoint(_Endpoint):
    """``POST /smartmarket/msgService/sendMessage``."""

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

    gateway: dict[str, ASGIApp] = {
        ihuyi.PATH: IhuyiEndpoint(state, runtime),
        juncdt.PATH: JuncdtEndpoint(state, runtime),
    }
    routes = [Route(path, endpoint, methods=["POST"]) for path, endpoint in gateway.items()]
    app = Starlette(routes=[*routes, *control_routes(state)], lifespan=lifespan)
    app.state.sandbox = state
    app.state.runtime = runtime
    app.state.gateway = gateway
    return app


def gateway_first(app: Starlette) -> ASGIApp:
    """What uvicorn serves: a POST to a gateway path goes straight to its endpoint, past Starlette's
    middleware and router (about a sixth of the sandbox's CPU per request, which shares the cores with
    the client in the benchmark); anything else goes through ``app``."""
    gateway: dict[str, ASGIApp] = app.state.gateway

    async def serve_app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            endpoint = gateway.get(scope["path"])
            if endpoint is not None:
                await endpoint(scope, receive, send)
                return
        await app(scope, receive, send)

    return serve_app
