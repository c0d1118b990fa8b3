"""Raw ASGI helpers for the gateway endpoints: lean enough for thousands of requests per second.

The gateway routes skip Starlette's Request/Response objects: they read the body and write the
reply as ASGI messages, which also lets the fault injector cut, stall or trickle a reply.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.types import Receive, Send

# Set inside a request task that drops its connection on purpose; the filter below then hides
# uvicorn's "returned without completing response" error for that task only.
_DROPPING: ContextVar[bool] = ContextVar("sandbox_dropping", default=False)


@dataclass(frozen=True, slots=True)
class Reply:
    """A gateway's answer before faults: the code it carries, the bytes and their content type."""

    code: str
    body: bytes
    content_type: bytes
    status: int = 200


async def read_body(receive: Receive) -> bytes:
    """The whole request body."""
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        return body
    parts = [body]
    while message.get("more_body", False):
        message = await receive()
        parts.append(message.get("body", b""))
    return b"".join(parts)


async def send_reply(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """A complete reply with a Content-Length."""
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if extra_headers:
        headers.extend(extra_headers)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_plain(send: Send, status: int, text: str) -> None:
    await send_reply(send, status, text.encode(), b"text/plain; charset=utf-8")


def mark_dropping() -> None:
    """Say that this request ends without a complete reply on purpose (the server closes the socket)."""
    _DROPPING.set(True)


class _QuietDrops(logging.Filter):
    """Hide uvicorn's error line for connections the sandbox drops on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (_DROPPING.get() and str(record.msg).startswith("ASGI callable returned without"))


_FILTER = _QuietDrops()


def install_log_filter() -> None:
    """Attach the filter to uvicorn's error logger once (idempotent)."""
    logger = logging.getLogger("uvicorn.error")
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
