"""The control API under ``/_sandbox``: tests and demos drive and read the sandbox through it.

Plain Starlette routes (not the hot path); never subject to fault injection.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from airflow_provider_sms.sandbox.state import GATEWAY_METHODS, SandboxState

PREFIX = "/_sandbox"
Handler = Callable[[SandboxState, Request], Awaitable[Any]]


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"body is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError("body must be a JSON object")
    return data


def _gateway_filter(request: Request) -> str | None:
    gateway = request.query_params.get("gateway")
    if gateway is not None and gateway not in GATEWAY_METHODS:
        raise ValueError(f"unknown gateway {gateway!r}")
    return gateway


async def _reset(state: SandboxState, request: Request) -> Any:
    state.reset()
    return {"ok": True}


async def _force(state: SandboxState, request: Request) -> Any:
    body = await _json_body(request)
    code = body.get("code")
    times = body.get("times", 1)
    msg = body.get("msg")
    if isinstance(code, bool) or not isinstance(code, (str, int)):
        raise ValueError("code must be a string (or an integer)")
    if isinstance(times, bool) or not isinstance(times, int):
        raise ValueError("times must be an integer")
    if msg is not None and not isinstance(msg, str):
        raise ValueError("msg must be a string or null")
    state.force(str(body.get("gateway")), str(body.get("method")), str(code), msg, times)
    return {"ok": True, "forced": state.snapshot()["forced"]}


async def _accounts(state: SandboxState, request: Request) -> Any:
    state.patch_accounts(await _json_body(request))
    return state.snapshot()


async def _set_faults(state: SandboxState, request: Request) -> Any:
    state.set_faults(await _json_body(request))
    return state.faults.to_dict()


async def _get_faults(state: SandboxState, request: Request) -> Any:
    return state.faults.to_dict()


async def _deliveries(state: SandboxState, request: Request) -> Any:
    gateway = _gateway_filter(request)
    items = [d.to_dict() for d in state.deliveries if gateway is None or d.gateway == gateway]
    return {"recorded": state.record, "deliveries": items}


async def _delivery_count(state: SandboxState, request: Request) -> Any:
    return state.delivery_summary()


async def _requests(state: SandboxState, request: Request) -> Any:
    gateway = _gateway_filter(request)
    items = [r.to_dict() for r in state.requests if gateway is None or r.gateway == gateway]
    return {"recorded": state.record, "count": state.request_count, "requests": items}


async def _state(state: SandboxState, request: Request) -> Any:
    return state.snapshot()


def _endpoint(state: SandboxState, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Bind ``handler`` to ``state``; a ValueError becomes a 400 with its message."""

    async def endpoint(request: Request) -> Response:
        try:
            result = await handler(state, request)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(result)

    return endpoint


def control_routes(state: SandboxState) -> list[Route]:
    """The routes of the control API for ``state``."""
    table: list[tuple[str, Handler, str]] = [
        ("/reset", _reset, "POST"),
        ("/force", _force, "POST"),
        ("/accounts", _accounts, "POST"),
        ("/faults", _set_faults, "POST"),
        ("/faults", _get_faults, "GET"),
        ("/deliveries", _deliveries, "GET"),
        ("/deliveries/count", _delivery_count, "GET"),
        ("/requests", _requests, "GET"),
        ("/state", _state, "GET"),
    ]
    routes: dict[str, dict[str, Handler]] = {}
    for path, handler, method in table:
        routes.setdefault(path, {})[method] = handler
    return [_route(state, path, by_method) for path, by_method in routes.items()]


def _route(state: SandboxState, path: str, by_method: dict[str, Handler]) -> Route:
    bound = {method: _endpoint(state, handler) for method, handler in by_method.items()}

    async def dispatch(request: Request) -> Response:
        return await bound[request.method if request.method != "HEAD" else "GET"](request)

    return Route(PREFIX + path, dispatch, methods=list(bound))
