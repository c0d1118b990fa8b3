"""Wait until the ihuyi account can pay for a campaign, before the first message goes out.

Imports stay light at DAG-parse time: the hook (httpx) and the trigger load when the task runs.
"""

from __future__ import annotations

import re
import time
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue

try:
    from airflow.sdk.configuration import conf
except ImportError:  # Airflow 3.2
    from airflow.configuration import conf
from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout, AirflowSkipException

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.sdk import Context

    from airflow_provider_sms.hooks.ihuyi import IhuyiHook

_INTEGER = re.compile(r"\s*[+-]?\d+\s*")


def parse_min_balance(value: object) -> int:
    """The rendered threshold as an int; a typo or a negative count is refused, never guessed."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"min_balance must be a whole number of messages, not {value!r}")
    if isinstance(value, float) and not value.is_integer():
        raise ValueError(f"min_balance must be a whole number of messages, not {value!r}")
    if isinstance(value, str) and not _INTEGER.fullmatch(value):
        raise ValueError(f"min_balance must be a whole number of messages, not {value!r}")
    number = int(value)
    if number < 0:
        raise ValueError(f"min_balance must be 0 or more, not {number}")
    return number


class BalanceSensor(BaseSensorOperator):
    """Succeed once the ihuyi balance (remaining message count) is at least ``min_balance``.

    :param min_balance: the count to wait for; templated, so it can follow the audience, e.g.
        ``"{{ ti.xcom_pull(task_ids='build_audience')['count'] }}"``. Negative or non-integer values
        fail the task before any request.
    :param ihuyi_conn_id: the ihuyi connection.
    :param deferrable: wait in the triggerer (no worker slot held) instead of poking. Default:
        Airflow's ``[operators] default_deferrable`` (False unless set).
    :param poll_interval: seconds between two balance queries (the sensor's ``poke_interval`` unless
        that is given too).

    Returns (XCom) ``{"balance": n, "min_balance": m}``. A fatal answer (wrong password, frozen
    account, undocumented code) fails the task at once: waiting cannot fix it. Network faults are
    logged and polled again until ``timeout``. Works in ``poke`` and ``reschedule`` modes.
    """

    template_fields: Sequence[str] = ("min_balance", "ihuyi_conn_id")
    ui_color = "#fdf3d8"

    def __init__(
        self,
        *,
        min_balance: int | str,
        ihuyi_conn_id: str = "ihuyi_default",
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = 60,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("poke_interval", poll_interval)
        super().__init__(**kwargs)
        self.min_balance = min_balance
        self.ihuyi_conn_id = ihuyi_conn_id
        self.deferrable = deferrable
        self.poll_interval = self.poke_interval

    @cached_property
    def hook(self) -> IhuyiHook:
        from airflow_provider_sms.hooks.ihuyi import IhuyiHook

        return IhuyiHook(ihuyi_conn_id=self.ihuyi_conn_id)

    def threshold(self) -> int:
        try:
            return parse_min_balance(self.min_balance)
        except ValueError as exc:
            raise AirflowFailException(str(exc)) from None

    def poke(self, context: Context) -> PokeReturnValue:
        from airflow_provider_sms.triggers.balance import classify_balance_error

        needed = self.threshold()
        try:
            with self.hook as hook:  # closed between pokes: a poke may be minutes after the last
                balance = hook.get_balance()
        except Exception as exc:
            kind = classify_balance_error(exc)
            if kind == "fatal":
                raise AirflowFailException(f"ihuyi balance query failed: {exc}") from exc
            if kind == "transient":
                self.log.warning("ihuyi balance query failed, will poke again: %s", exc)
                return PokeReturnValue(False)
            raise
        self.log.info("ihuyi balance %d, need %d", balance, needed)
        return PokeReturnValue(balance >= needed, {"balance": balance, "min_balance": needed})

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        from airflow_provider_sms.triggers.balance import BalanceTrigger

        try:
            first = self.poke(context)  # enough already, or a fatal answer: no deferral needed
        except AirflowFailException as exc:
            if self.soft_fail or self.never_fail:
                raise AirflowSkipException(f"Skipping (soft_fail/never_fail is set): {exc}") from exc
            raise
        if first.is_done:
            return first.xcom_value
        self.defer(
            trigger=BalanceTrigger(
                min_balance=self.threshold(),
                ihuyi_conn_id=self.ihuyi_conn_id,
                poll_interval=self.poll_interval,
                timeout=time.time() + self.timeout,
            ),
            method_name="execute_complete",
            # The trigger stops itself at this deadline; Airflow's own timeout is the backstop.
            timeout=timedelta(seconds=self.timeout + max(self.poll_interval, 60)),
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, int]:
        """Turn the trigger's event into the task's outcome (soft_fail is applied by Airflow here)."""
        status = (event or {}).get("status")
        if status == "success" and event is not None:
            balance = int(event["balance"])
            self.log.info("ihuyi balance %d reaches %s", balance, self.min_balance)
            return {"balance": balance, "min_balance": self.threshold()}
        if status == "timeout" and event is not None:
            raise AirflowSensorTimeout(str(event.get("message", "timed out waiting for the ihuyi balance")))
        message = (event or {}).get("message") or f"unexpected trigger event {event!r}"
        raise AirflowFailException(f"ihuyi balance query failed: {message}")
