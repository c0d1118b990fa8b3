"""The signals that tell a task to stop, caught while a campaign's event loop runs.

Airflow ends a task with signals: ``SIGALRM`` when ``execution_timeout`` is reached (its handler raises
``AirflowTaskTimeout``), ``SIGTERM`` on "Mark failed", a kill from the UI or a worker shutdown (its
handler calls the operator's ``on_kill``; ``SIGKILL`` follows five seconds later), ``SIGINT`` first in
some shutdowns. A Python handler that raises while an event loop runs raises inside the loop's own
signal callback, where the loop logs the exception and carries on: the campaign would not notice.

So while a campaign runs, these signals go to the loop instead, which stops the campaign (no new
request, requests in flight get a short grace); once every recipient has its outcome, the previous
handlers are put back, and the caller passes the signal on to them (:meth:`StopSignals.pass_on`).
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType

Handler = Any  # what signal.getsignal returns: a callable, SIG_DFL, SIG_IGN or None

WHY = {
    signal.SIGALRM: "execution_timeout reached (SIGALRM)",
    signal.SIGTERM: "the task was told to stop (SIGTERM: Mark failed, a kill, or a worker shutdown)",
    signal.SIGINT: "the task was interrupted (SIGINT)",
}


class StopSignals:
    """Route the stop signals to ``on_signal(reason)`` while installed in a running loop."""

    def __init__(self, on_signal: Callable[[str], None]) -> None:
        self.on_signal = on_signal
        self.received: signal.Signals | None = None
        self.previous: dict[signal.Signals, Handler] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def install(self) -> None:
        """Take the signals over in the running loop (only the main thread receives signals)."""
        if threading.current_thread() is not threading.main_thread():
            return
        loop = asyncio.get_running_loop()
        for sig in WHY:
            previous = signal.getsignal(sig)
            if previous is signal.SIG_IGN:  # ignored on purpose by whoever runs us: leave it so
                continue
            try:
                loop.add_signal_handler(sig, self._caught, sig)
            except (NotImplementedError, RuntimeError, ValueError):  # pragma: no cover - not on POSIX
                continue
            self.previous[sig] = previous
        self._loop = loop

    def _caught(self, sig: signal.Signals) -> None:
        if self.received is None:
            self.received = sig
        self.on_signal(WHY[sig])

    def restore(self) -> None:
        """Give the signals back to their previous handlers (the loop's removal would reset them to
        the default action, which for ``SIGTERM`` is to die without a word)."""
        if self._loop is None:
            return
        for sig, previous in self.previous.items():
            self._loop.remove_signal_handler(sig)
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        self._loop = None

    def pass_on(self) -> None:
        """Deliver the signal received to the handler that was there before: Airflow's raises
        ``AirflowTaskTimeout`` for ``SIGALRM``; a default action ends the process as it would have."""
        sig = self.received
        if sig is None:
            return
        previous = self.previous.get(sig)
        if callable(previous):
            frame: FrameType | None = None
            previous(sig, frame)
        elif previous in (signal.SIG_DFL, None):
            os.kill(os.getpid(), sig)


class StoppedBySignal(Exception):
    """A campaign ended early because the task was told to stop; every recipient has its outcome in
    ``summary``. Call :meth:`pass_on` to let the signal's own handler act (Airflow's, for a timeout)."""

    def __init__(self, summary: Any, signals: StopSignals) -> None:
        super().__init__(summary.stopped or "stopped by a signal")
        self.summary = summary
        self.signals = signals

    def pass_on(self) -> None:
        self.signals.pass_on()
