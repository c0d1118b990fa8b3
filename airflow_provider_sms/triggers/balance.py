"""Wait for the ihuyi balance in the triggerer, so a deferred :class:`BalanceSensor` holds no worker slot."""

from __future__ import annotations

import asyncio
import time
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_sms.errors import SmsProviderError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from airflow_provider_sms.hooks.ihuyi import IhuyiHook


def classify_balance_error(exc: BaseException) -> Literal["transient", "fatal"] | None:
    """What a failed balance query means for a wait: poll again, stop now, or (None) not ours to judge.

    Network faults, 5xx/429 and transient codes pass; wrong password, frozen account, undocumented
    codes, a redirect or a broken connection config will not fix themselves while we wait.
    """
    if isinstance(exc, SmsProviderError):
        return "transient" if exc.retryable else "fatal"
    return None


def _event(payload: dict[str, Any]) -> TriggerEvent:
    return TriggerEvent(payload)  # type: ignore[no-untyped-call]


def redact(message: str, *secrets: str | None) -> str:
    """Belt and braces: no error text leaves this module with a secret in it, whatever produced it."""
    for secret in secrets:
        if secret:
            message = message.replace(secret, "***")
    return message


class BalanceTrigger(BaseTrigger):
    """Poll ``GetNum`` until the balance reaches ``min_balance``, a fatal answer, or the deadline.

    :param min_balance: the balance to wait for.
    :param ihuyi_conn_id: the ihuyi connection.
    :param poll_interval: seconds between two queries.
    :param timeout: absolute deadline (epoch seconds), so a trigger restarted on another triggerer keeps
        the original deadline; None waits forever.

    Events: ``{"status": "success", "balance": n}``, ``{"status": "error", "message": ...}`` (fatal, at
    once), ``{"status": "timeout", "message": ..., "balance": last seen or None}``.
    """

    def __init__(
        self,
        min_balance: int,
        ihuyi_conn_id: str = "ihuyi_default",
        poll_interval: float = 60.0,
        timeout: float | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.min_balance = int(min_balance)
        self.ihuyi_conn_id = ihuyi_conn_id
        self.poll_interval = float(poll_interval)
        self.timeout = None if timeout is None else float(timeout)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "min_balance": self.min_balance,
                "ihuyi_conn_id": self.ihuyi_conn_id,
                "poll_interval": self.poll_interval,
                "timeout": self.timeout,
            },
        )

    @cached_property
    def hook(self) -> IhuyiHook:
        from airflow_provider_sms.hooks.ihuyi import IhuyiHook

        return IhuyiHook(ihuyi_conn_id=self.ihuyi_conn_id)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        async with self.hook as hook:
            event = await self._wait(hook)
        yield event

    async def _wait(self, hook: IhuyiHook) -> TriggerEvent:
        from asgiref.sync import sync_to_async

        last: int | None = None
        try:
            # Reading the Connection (and registering its secret with the masker) is blocking
            # Task SDK I/O: do it off the event loop, once.
            await sync_to_async(lambda: hook.client)()
            while True:
                try:
                    last = await hook.aget_balance()
                except SmsProviderError as exc:
                    if classify_balance_error(exc) != "transient":
                        raise
                    self.log.warning("ihuyi balance query failed, polling again: %s", self._text(hook, exc))
                else:
                    if last >= self.min_balance:
                        self.log.info("ihuyi balance %d reaches %d", last, self.min_balance)
                        return _event({"status": "success", "balance": last})
                    self.log.info("ihuyi balance %d, waiting for %d", last, self.min_balance)
                remaining = None if self.timeout is None else self.timeout - time.time()
                if remaining is not None and remaining <= 0:
                    seen = "unknown" if last is None else str(last)
                    return _event(
                        {
                            "status": "timeout",
                            "balance": last,
                            "message": f"ihuyi balance ({seen}) did not reach {self.min_balance} "
                            "before the sensor's timeout",
                        }
                    )
                pause = self.poll_interval if remaining is None else min(self.poll_interval, remaining)
                await asyncio.sleep(pause)
        except Exception as exc:
            # Fatal answers, a missing connection, anything unexpected: report it to the task at once
            # rather than failing the trigger, so the task log says why.
            return _event({"status": "error", "message": self._text(hook, exc)})

    @staticmethod
    def _text(hook: IhuyiHook, exc: BaseException) -> str:
        return redact(f"{type(exc).__name__}: {exc}", *hook.secrets)
