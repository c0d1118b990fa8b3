"""Errors that tell the caller what to do: retry (transient), stop (fatal), or report and go on.

``retryable`` answers "can a retry help?" for every one of them: the operators, the template upload
and the balance trigger all decide by it.

Every layer raises or catches these, so this module imports nothing of the package.
"""

from __future__ import annotations

from typing import Protocol


class Reply(Protocol):
    """What an error needs of a gateway's reply (``gateways.models.GatewayReply``)."""

    @property
    def code(self) -> str: ...

    def describe(self) -> str: ...


class SmsProviderError(Exception):
    """Base of every error this package raises on purpose."""

    @property
    def retryable(self) -> bool:
        """Can a retry help? Only for a transient code or a transport fault a retry may get past; bad
        input, a refused configuration, a fatal or undocumented code stay as they are."""
        return False


class InvalidInputError(SmsProviderError, ValueError):
    """Input refused before anything was sent (bad numbers, missing params, broken template...)."""


class SourceUnavailableError(SmsProviderError):
    """A source the send depends on (a suppression list) could not be reached: nothing was sent, and a
    retry may get past it (a database restarting, a network fault)."""

    @property
    def retryable(self) -> bool:
        return True


class InsufficientBalanceError(SmsProviderError):
    """The balance guard found too little balance for the campaign; nothing was sent."""


class GatewayError(SmsProviderError):
    """The gateway could not be used for this request."""


class TransportError(GatewayError):
    """No usable answer: network fault, HTTP error status, malformed or oversized reply.

    ``ambiguous`` is True when the request may have reached the gateway (timeout after writing,
    connection lost before the reply): resending it could text someone twice.
    ``retryable`` is False for faults that retrying cannot fix (a redirect, a 4xx status).
    ``retry_after``: the seconds the gateway asked us to wait before trying again (``Retry-After`` on a
    429 or 503), None when it did not say.
    """

    def __init__(
        self, message: str, *, ambiguous: bool, retryable: bool = True, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.ambiguous = ambiguous
        self._retryable = retryable
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return self._retryable


class GatewayCodeError(GatewayError):
    """The gateway answered with a code other than success; ``reply`` has it verbatim."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.describe())
        self.reply = reply

    @property
    def code(self) -> str:
        return self.reply.code


class TransientGatewayError(GatewayCodeError):
    """A code worth retrying later (e.g. ihuyi 0, juncdt 10001/30009)."""

    @property
    def retryable(self) -> bool:
        return True


class FatalGatewayError(GatewayCodeError):
    """Auth, config, template, quota or balance: retrying cannot help; stop the campaign."""


class BadInputGatewayError(GatewayCodeError):
    """The gateway refused these recipients (bad or blacklisted numbers): report them, go on."""


class UnknownGatewayCodeError(GatewayCodeError):
    """A code the vendor never documented: fail that request, no retry."""
