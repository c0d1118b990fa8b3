"""The settings of a send, declared once: defaults, bounds and how a given value is read.

A task's arguments, a connection's extras and a hook's caller all go through these models, so a bound
lives in one place and every way in refuses the same values. Values often come from Jinja templates,
which render strings: numbers may be numeric strings and flags the usual words, but nothing is guessed
(``"false"`` is false, ``"maybe"`` an error, a bool is not a number). Errors name what to fix, one
message per setting, without pydantic's multi-line dump. No Airflow import here.
"""

from __future__ import annotations

import codecs
import math
import re
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from airflow_provider_sms.dispatch.policy import DEFAULT_OPT_OUT_PATTERN, QuietHours, duration_seconds
from airflow_provider_sms.errors import InvalidInputError
from airflow_provider_sms.gateways.limits import DEFAULT_TIMEOUT
from airflow_provider_sms.protocol.phones import mask_in_text

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


def _flag(value: object) -> bool:
    """Refuse what pydantic's lax bool would guess ("t", "n", 1.0...): a typo must not turn a check
    off, or a dry run into a real send."""
    if isinstance(value, bool):
        return value
    if type(value) is int and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
    raise PydanticCustomError("flag", "must be true or false")


def _custom_error(kind: str, exc: Exception) -> PydanticCustomError:
    """``exc``'s message as a validation error (pydantic would read its braces as placeholders)."""
    return PydanticCustomError(kind, str(exc).replace("{", "(").replace("}", ")"))


def _number(kind: str) -> Callable[[object], object]:
    """A number, or a numeric string as a template renders it; never a bool (``True`` is not 1 here)."""

    def check(value: object) -> object:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise PydanticCustomError("not_a_number", f"must be {kind}")
        return value.strip() if isinstance(value, str) else value

    return check


Flag = Annotated[bool, BeforeValidator(_flag)]
Whole = Annotated[int, BeforeValidator(_number("a whole number"))]
Real = Annotated[float, BeforeValidator(_number("a number"))]


class SendSettings(BaseModel):
    """How a bulk send runs: what a task sets, over what its connection sets (:meth:`over`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    concurrency: Whole = Field(default=16, ge=1, le=512, description="Requests in flight at once.")
    requests_per_second: Real | None = Field(
        default=None,
        ge=0.1,
        le=100_000,
        allow_inf_nan=False,
        description="Never exceeded (carriers block senders that burst). None: no limit beyond concurrency.",
    )
    numbers_per_request: Whole | None = Field(
        default=None,
        ge=1,
        le=1000,
        description="Numbers in one request. None: the connection's, else the gateway's default; each "
        "gateway also checks its own maximum.",
    )
    max_attempts: Whole = Field(
        default=4,
        ge=1,
        le=20,
        description="Tries of one request on transient faults, with backoff and jitter.",
    )
    dry_run: Flag = Field(default=False, description="Validate and estimate, send nothing.")
    resend_ambiguous: Flag = Field(
        default=False, description="Resend recipients whose earlier request may have been delivered."
    )
    report_unmasked: Flag = Field(default=False, description="Write numbers in clear in the report.")
    use_ledger: Flag = Field(
        default=True, description="Record outcomes durably, so no run texts a number twice."
    )
    check_balance: Flag = Field(
        default=False, description="Before the first request, fail unless the balance covers the audience."
    )
    report_uri: str | None = Field(default=None, description="Where to write the per-recipient report.")
    report_format: Literal["csv", "jsonl"] | None = Field(
        default=None, description="The report's format. None: from the report's name."
    )
    progress_interval: Real = Field(
        default=10.0, ge=1, le=86_400, allow_inf_nan=False, description="Seconds between progress lines."
    )
    lease_seconds: Real = Field(
        default=60.0,
        ge=2,
        le=3600,
        allow_inf_nan=False,
        description="How long a task's ledger claims outlive its last heartbeat if it dies.",
    )
    heartbeat_seconds: Real = Field(
        default=10.0,
        ge=0.5,
        le=1800,
        allow_inf_nan=False,
        description="How often a running task renews its lease (at most half of lease_seconds).",
    )
    retention_days: Real = Field(
        default=180,
        ge=1,
        le=36_500,
        allow_inf_nan=False,
        description="Finished ledger rows older than this are pruned when a campaign ends.",
    )
    max_failed_ratio: Real = Field(
        default=0.0,
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="Share of attempted recipients that may fail.",
    )
    max_rejected_ratio: Real | None = Field(
        default=None,
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="Share of recipients that may be rejected as bad input. None: never fatal.",
    )
    encoding: str = Field(
        default="utf-8", description="Text encoding of a recipients file (e.g. gbk, gb18030)."
    )
    max_consecutive_ambiguous: Whole = Field(
        default=10,
        ge=0,
        le=100_000,
        description="Stop the campaign after this many ambiguous requests in a row. 0: never.",
    )

    # ----- the contact policy (dispatch.policy) -----
    purpose: Literal["marketing", "notification", "verification"] = Field(
        default="marketing",
        description="Why the message is sent; marketing (the default) gets quiet hours, the frequency "
        "cap and the opt-out check.",
    )
    quiet_hours: str = Field(
        default="08:00-21:00",
        description="Marketing is sent only in this daily window (HH:MM[:SS]-HH:MM[:SS]); 'off': any time.",
    )
    quiet_hours_timezone: str = Field(default="Asia/Shanghai", description="The window's time zone.")
    max_per_number: Whole | None = Field(
        default=None,
        ge=1,
        le=1000,
        description="Marketing: at most this many accepted messages per number in `per`, across "
        "campaigns (needs the ledger). None: no cap.",
    )
    per: str = Field(default="24h", description="The cap's rolling period: e.g. 30m, 24h, 7d.")
    opt_out_pattern: str = Field(
        default=DEFAULT_OPT_OUT_PATTERN,
        description="Marketing: a regular expression template_text must match (an opt-out instruction).",
    )
    suppression_uri: str | None = Field(
        default=None, description="A file of numbers never to text (one a line, or a CSV phone column)."
    )
    suppression_conn_id: str | None = Field(
        default=None, description="An Airflow SQL connection suppression_sql runs on."
    )
    suppression_sql: str | None = Field(
        default=None, description="A query whose first column is the numbers never to text."
    )
    max_recipients: Whole | None = Field(
        default=None, ge=1, le=10**9, description="Fail before sending when the audience is larger."
    )
    expected_recipients: Whole | None = Field(
        default=None, ge=1, le=10**9, description="Fail before sending unless the audience is this size..."
    )
    expected_tolerance: Real = Field(
        default=0.1, ge=0, le=10, allow_inf_nan=False, description="...within this share of it."
    )
    price_per_message: Real | None = Field(
        default=None, ge=0, le=10**6, allow_inf_nan=False, description="For a dry run's cost estimate."
    )

    @field_validator("quiet_hours_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value.strip())
        except (ValueError, ZoneInfoNotFoundError):
            raise PydanticCustomError("zone", "must be an IANA time zone, e.g. 'Asia/Shanghai'") from None
        return value.strip()

    @field_validator("quiet_hours")
    @classmethod
    def _window(cls, value: str) -> str:
        try:
            QuietHours.parse(value)
        except ValueError as exc:
            raise _custom_error("window", exc) from None
        return value.strip()

    @field_validator("per")
    @classmethod
    def _period(cls, value: str) -> str:
        try:
            duration_seconds(value)
        except ValueError as exc:
            raise _custom_error("duration", exc) from None
        return value.strip()

    @field_validator("opt_out_pattern")
    @classmethod
    def _pattern(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise PydanticCustomError("pattern", f"must be a regular expression ({exc})") from None
        return value

    @property
    def window(self) -> QuietHours | None:
        """The quiet hours that apply to this send (marketing only), or None."""
        if self.purpose != "marketing":
            return None
        return QuietHours.parse(self.quiet_hours, self.quiet_hours_timezone)

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            return codecs.lookup(value.strip()).name
        except LookupError:
            raise PydanticCustomError(
                "encoding", "must be a text encoding Python knows, e.g. 'utf-8', 'gbk' or 'gb18030'"
            ) from None

    @model_validator(mode="after")
    def _heartbeat_within_lease(self) -> SendSettings:
        if self.heartbeat_seconds > self.lease_seconds / 2:
            raise PydanticCustomError(
                "heartbeat",
                "heartbeat_seconds must be at most half of lease_seconds, got {heartbeat} and {lease}",
                {"heartbeat": self.heartbeat_seconds, "lease": self.lease_seconds},
            )
        return self

    def over(self, base: SendSettings) -> SendSettings:
        """These settings where they were given (not None), ``base``'s elsewhere: a task's arguments
        over its connection's extras."""
        given = {name: getattr(self, name) for name in self.model_fields_set}
        return base.model_copy(update={k: v for k, v in given.items() if v is not None})


class ConnectionExtras(BaseModel):
    """A gateway connection's extras that are not send settings."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    timeout: Real = Field(
        default=DEFAULT_TIMEOUT,
        ge=0.1,
        le=600,
        allow_inf_nan=False,
        description="Upper bound of one gateway call, in seconds.",
    )
    pid: Whole | None = Field(default=None, ge=0, le=2**31, description="ihuyi product id.")
    verify_tls: Flag = Field(default=True, description="Verify the gateway's TLS certificate.")


Model = TypeVar("Model", bound=BaseModel)


def validate(
    model: type[Model],
    given: Mapping[str, Any],
    *,
    what: str = "invalid send settings: ",
    name: Callable[[str], str] = str,
) -> Model:
    """``model`` from the values ``given``, None or blank meaning not given (its default applies, as
    when a template renders an absent value to ""). An error is an :class:`InvalidInputError` that
    starts with ``what`` and gives one clause per bad setting, each named by ``name``."""
    values = {k: v for k, v in given.items() if v is not None and not (isinstance(v, str) and not v.strip())}
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        problems = [_describe(model, error, name) for error in exc.errors(include_url=False)]
        raise InvalidInputError(what + "; ".join(dict.fromkeys(problems))) from None


def send_settings(given: Mapping[str, Any]) -> SendSettings:
    """A task's :class:`SendSettings` from its arguments (see :func:`validate`)."""
    return validate(SendSettings, given)


def _describe(model: type[BaseModel], error: ErrorDetails, name: Callable[[str], str]) -> str:
    if not error["loc"]:  # a rule across fields: its message names them
        return error["msg"]
    field = str(error["loc"][0])
    label, kind, value = name(field), error["type"], error.get("input")
    if kind == "extra_forbidden":
        return f"{label} is not a setting"
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than", "finite_number"):
        low, high = _bounds(model, field)
        got = _shown(value, bare=True)
        if low is not None and high is not None:
            return f"{label} must be between {_num(low)} and {_num(high)}, got {got}"
        if low is not None:
            return f"{label} must be at least {_num(low)}, got {got}"
        return f"{label} must be at most {_num(high)}, got {got}"
    if kind.startswith("int_"):
        return f"{label} must be a whole number, got {_shown(value)}"
    if kind.startswith("float_"):
        return f"{label} must be a number, got {_shown(value)}"
    if kind == "literal_error":
        return f"{label} must be {error.get('ctx', {}).get('expected', '')}, got {_shown(value)}"
    if kind == "string_type":
        return f"{label} must be text, not {type(value).__name__}"
    # Our own errors (flag, not_a_number, encoding) and anything else: pydantic's one-line message.
    message = error["msg"].removeprefix("Value error, ")
    return f"{label} {message}, got {_shown(value)}"


def _bounds(model: type[BaseModel], field: str) -> tuple[float | None, float | None]:
    info = model.model_fields.get(field)
    low = high = None
    for item in info.metadata if info else ():
        low = getattr(item, "ge", low)
        high = getattr(item, "le", high)
    return low, high


def _num(value: float | None) -> str:
    return str(int(value)) if isinstance(value, (int, float)) and float(value).is_integer() else str(value)


def _shown(value: object, bare: bool = False) -> str:
    """The value as given, short, with any phone number in it masked."""
    if bare and isinstance(value, str):  # a numeric string out of range: shown as the number it is
        text = value.strip()
    elif bare and isinstance(value, float) and math.isfinite(value):
        text = _num(value)
    else:
        text = repr(value)
    text = text if len(text) <= 40 else text[:37] + "..."
    return mask_in_text(text)
