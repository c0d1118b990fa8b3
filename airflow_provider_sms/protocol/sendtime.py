"""Scheduled send times: ihuyi wants ``YYYY-MM-DD HH:MM:SS`` in Beijing time."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

BEIJING = timezone(timedelta(hours=8), "Asia/Shanghai")
FORMAT = "%Y-%m-%d %H:%M:%S"


def format_send_time(value: str | datetime | None, *, now: datetime | None = None) -> str:
    """Return the gateway's form of ``value`` ('' = send now); refuse bad formats and past times.

    A naive datetime or a string is read as Beijing time; an aware datetime is converted.
    """
    if value is None or value == "":
        return ""
    if isinstance(value, datetime):
        when = value.replace(tzinfo=BEIJING) if value.tzinfo is None else value.astimezone(BEIJING)
    else:
        try:
            when = datetime.strptime(value.strip(), FORMAT).replace(tzinfo=BEIJING)
        except ValueError:
            raise ValueError(
                f"send_time {value!r} is not in the form YYYY-MM-DD HH:MM:SS (Beijing time)"
            ) from None
    current = now or datetime.now(tz=BEIJING)
    if when < current:
        raise ValueError(
            f"send_time {when.strftime(FORMAT)} (Beijing) is in the past; leave it empty to send now"
        )
    return when.strftime(FORMAT)
