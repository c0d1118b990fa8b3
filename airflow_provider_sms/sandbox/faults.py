"""Fault injection on the gateway endpoints: latency, 5xx or 429, dropped, hung and malformed replies.

One ``random.Random(seed)`` of the state drives every draw: two per request, on arrival (HTTP error;
then one split into reset/hang/malformed bands; then jitter if set), so a seed replays a run.
An HTTP error (5xx or 429, with a ``Retry-After`` if set; by the rate, or for the next
``http_error_times`` requests) comes before the request is processed (nothing recorded); a reset,
hang or malformed reply comes *after* it was processed and recorded: the worst case for a client,
delivered but unknown.
"""

from __future__ import annotations

import asyncio
import gzip
import threading
from http import HTTPStatus
from typing import TYPE_CHECKING

from airflow_provider_sms.sandbox.asgi import Reply, mark_dropping, send_reply

if TYPE_CHECKING:
    from collections.abc import Callable

    from starlette.types import Receive, Send

    from airflow_provider_sms.sandbox.state import FaultSettings, RequestRecord, SandboxState

_HTML_ERROR = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)
_HTML = b"text/html; charset=utf-8"


def _billion_laughs() -> bytes:
    """The classic entity-expansion bomb: a few hundred bytes that expand to a billion 'lol's."""
    entities = ['<!ENTITY lol0 "lol">'] + [f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)]
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<!DOCTYPE SubmitResult [\n '
        + "\n ".join(entities)
        + "\n]>\n"
        '<SubmitResult xmlns="http://106.ihuyi.cn/"><code>2</code><msg>&lol9;</msg><mmsid>1</mmsid></SubmitResult>'
    ).encode()


_XML_BOMB = _billion_laughs()
_CHUNK = 64 * 1024


class Runtime:
    """Per-app runtime: lets ``SandboxServer.stop()`` (another thread) release hung replies at once."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._lock = threading.Lock()

    def bind(self) -> None:
        """Remember the serving loop (called on the loop, at startup)."""
        with self._lock:
            self._loop = asyncio.get_running_loop()
            self._stopping = asyncio.Event()

    @property
    def stopping(self) -> asyncio.Event:
        if self._stopping is None:
            self.bind()
        assert self._stopping is not None
        return self._stopping

    def release(self) -> None:
        """End every hang, trickle and huge reply now (thread-safe)."""
        with self._lock:
            loop, event = self._loop, self._stopping
        if loop is not None and event is not None and not loop.is_closed():
            loop.call_soon_threadsafe(event.set)


class _Abort:
    """Becomes true when the client disconnects or the server stops: ends slow replies early."""

    def __init__(self, receive: Receive, runtime: Runtime) -> None:
        self._task = asyncio.ensure_future(self._watch(receive, runtime.stopping))

    @staticmethod
    async def _watch(receive: Receive, stopping: asyncio.Event) -> None:
        async def disconnected() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        tasks = {asyncio.ensure_future(disconnected()), asyncio.ensure_future(stopping.wait())}
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()

    @property
    def triggered(self) -> bool:
        return self._task.done()

    async def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True if aborted meanwhile."""
        if self._task.done():
            return True
        done, _ = await asyncio.wait({self._task}, timeout=seconds)
        return bool(done)

    def close(self) -> None:
        self._task.cancel()


async def serve(
    state: SandboxState,
    runtime: Runtime,
    record: RequestRecord,
    process: Callable[[], Reply],
    receive: Receive,
    send: Send,
) -> None:
    """Answer one gateway request through the fault settings of ``state``."""
    faults = state.faults
    if not faults.active:
        reply = process()
        record.code = reply.code
        await send_reply(send, reply.status, reply.body, reply.content_type)
        return
    # Every request takes the same two draws on arrival, whatever the rates: the pattern of one fault
    # does not shift when another rate changes, and a seed replays a run.
    rng = state.rng
    fail_5xx, after_draw = rng.random(), rng.random()
    delay = faults.latency_ms + (rng.uniform(0.0, faults.jitter_ms) if faults.jitter_ms else 0.0)
    if delay > 0:
        resets = state.resets
        await asyncio.sleep(delay / 1000.0)
        if state.resets != resets:  # it arrived before a reset: it must not land in the new state
            await send_reply(send, 503, b"<html><body>the sandbox was reset</body></html>", _HTML)
            return
    if faults.http_error_times or fail_5xx < faults.http_5xx_rate:
        faults.http_error_times = max(0, faults.http_error_times - 1)
        await _http_error(faults, record, send)
        return
    if faults.hostile == "redirect":
        record.fault = "redirect"
        await send_reply(send, 302, b"", _HTML, [(b"location", faults.redirect_to.encode())])
        return
    reply = process()
    record.code = reply.code
    after = _band(faults, after_draw)
    if after is not None:
        record.fault = after
        await _after_fault(after, faults, runtime, reply, receive, send)
    elif faults.hostile:
        record.fault = faults.hostile
        await _hostile(faults.hostile, faults, runtime, reply, receive, send)
    else:
        await send_reply(send, reply.status, reply.body, reply.content_type)


async def _http_error(faults: FaultSettings, record: RequestRecord, send: Send) -> None:
    """The injected HTTP error, before the request is processed: nothing recorded but the fault."""
    status = faults.http_error_status
    record.fault = "http_429" if status == 429 else "http_5xx"
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    body = f"<html><body><h1>{status} {phrase}</h1></body></html>".encode()
    headers = [(b"retry-after", faults.retry_after.encode("ascii"))] if faults.retry_after else None
    await send_reply(send, status, body, _HTML, headers)


def _band(faults: FaultSettings, draw: float) -> str | None:
    """One draw split into consecutive bands: reset, then hang, then malformed."""
    for name, rate in (
        ("reset", faults.reset_rate),
        ("hang", faults.hang_rate),
        ("malformed", faults.malformed_rate),
    ):
        if draw < rate:
            return name
        draw -= rate
    return None


async def _after_fault(
    kind: str, faults: FaultSettings, runtime: Runtime, reply: Reply, receive: Receive, send: Send
) -> None:
    if kind == "reset":
        await drop_mid_reply(send, reply)
    elif kind == "hang":
        abort = _Abort(receive, runtime)
        try:
            # Never answer: on timeout or server stop drop the connection; a gone client needs nothing.
            if not await abort.wait(faults.hang_seconds) or runtime.stopping.is_set():
                await drop_mid_reply(send, reply)
        finally:
            abort.close()
    else:
        await send_reply(send, 200, _HTML_ERROR, _HTML)


async def drop_mid_reply(send: Send, reply: Reply) -> None:
    """Promise the whole reply, send half, and let the server close the socket."""
    headers = [(b"content-type", reply.content_type), (b"content-length", str(len(reply.body) or 1).encode())]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body[: len(reply.body) // 2], "more_body": True})
    mark_dropping()


async def _hostile(
    mode: str, faults: FaultSettings, runtime: Runtime, reply: Reply, receive: Receive, send: Send
) -> None:
    if mode == "xml_bomb":
        await send_reply(send, 200, _XML_BOMB, b"text/xml; charset=utf-8")
    elif mode == "empty":
        await send_reply(send, 200, b"", reply.content_type)
    elif mode == "truncated":
        await send_reply(send, 200, reply.body[: len(reply.body) // 2], reply.content_type)
    elif mode == "huge":
        await _huge(faults.huge_bytes, runtime, reply, receive, send)
    elif mode == "trickle":
        await _trickle(faults.trickle_interval, runtime, reply, receive, send)
    elif mode == "gzip":  # a proxy that compresses whatever the client asked for
        body = gzip.compress(reply.body)
        await send_reply(send, reply.status, body, reply.content_type, [(b"content-encoding", b"gzip")])
    else:  # pragma: no cover - validated by FaultSettings.patch
        await send_reply(send, reply.status, reply.body, reply.content_type)


async def _huge(size: int, runtime: Runtime, reply: Reply, receive: Receive, send: Send) -> None:
    """A reply of ``size`` bytes, chunked, generated on the fly: a client must stop reading."""
    head = reply.body[: reply.body.find(b"<msg>") + 5] if b"<msg>" in reply.body else b""
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", reply.content_type)]}
    )
    abort = _Abort(receive, runtime)
    try:
        chunk = b"A" * _CHUNK
        await send({"type": "http.response.body", "body": head, "more_body": True})
        sent = len(head)
        while sent < size and not abort.triggered:
            piece = chunk if size - sent >= _CHUNK else chunk[: size - sent]
            await send({"type": "http.response.body", "body": piece, "more_body": True})
            sent += len(piece)
        if abort.triggered:
            mark_dropping()
        else:
            await send({"type": "http.response.body", "body": b""})
    finally:
        abort.close()


async def _trickle(interval: float, runtime: Runtime, reply: Reply, receive: Receive, send: Send) -> None:
    """The valid reply, one byte per ``interval`` seconds: a client needs a total deadline."""
    headers = [(b"content-type", reply.content_type), (b"content-length", str(len(reply.body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    abort = _Abort(receive, runtime)
    try:
        for i in range(len(reply.body)):
            await send({"type": "http.response.body", "body": reply.body[i : i + 1], "more_body": True})
            if await abort.wait(interval):
                mark_dropping()
                return
        await send({"type": "http.response.body", "body": b""})
    finally:
        abort.close()
