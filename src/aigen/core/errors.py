"""The domain errors the rules raise; web/errors.py maps each to a status in one place."""

from __future__ import annotations

from aigen.clients import claude
from aigen.clients.ratelimit import Decision


class DomainError(Exception):
    """A refusal the user should read: `message` is shown to them as it is."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        # The rate-limit decision of the request it refused, for the RateLimit-* headers.
        self.rate_limit: Decision | None = None


class InvalidInput(DomainError):
    """The request names something malformed (a blank prompt, a bad cursor)."""


class NotSignedIn(DomainError):
    """Nobody is signed in, or the signed-in account no longer exists."""


class NotFound(DomainError):
    """The thing asked for does not exist for this user (someone else's is absent too)."""


class Conflict(DomainError):
    """The request clashes with what is stored (an address owned by another account)."""


class SignInFailed(DomainError):
    """The identity provider's answer could not be accepted."""


class SignInUnavailable(DomainError):
    """The identity provider cannot be reached to start a sign-in."""


class VerificationRequired(DomainError):
    """Free credits wait for a verified e-mail address."""


class CreditLimitReached(DomainError):
    """The plan's credits are spent: an upgrade is the way on."""


class PaymentsUnavailable(DomainError):
    """Stripe cannot be reached or refused a checkout or portal session right now."""


class RateLimited(DomainError):
    """Too many requests for this key; `decision` says when the next one is allowed."""

    def __init__(self, message: str, decision: Decision) -> None:
        super().__init__(message)
        self.decision = decision
        self.rate_limit = decision

    @property
    def retry_after(self) -> int:
        """Whole seconds until a request will be allowed."""
        return self.decision.retry_after


class ServiceUnavailable(DomainError):
    """A service of ours (the database) cannot be reached; trying again shortly may work.

    `reason` names the failure for the log line, never shown to the user.
    """

    RETRY_AFTER = 2

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.retryable = True

    @property
    def retry_after(self) -> int:
        """Whole seconds to wait before trying again."""
        return self.RETRY_AFTER


class UpstreamFailed(DomainError):
    """Claude could not answer; `kind` says how, `retryable` whether trying again may help."""

    TIMEOUT = claude.TIMEOUT
    UNAVAILABLE = claude.UNAVAILABLE
    BAD_ANSWER = claude.BAD_ANSWER
    REJECTED = claude.REJECTED

    def __init__(self, message: str, *, kind: str, retryable: bool) -> None:
        super().__init__(message)
        self.kind = kind
        self.retryable = retryable

    @classmethod
    def from_client(cls, error: claude.UpstreamError) -> UpstreamFailed:
        """The domain error for a failed Claude call."""
        return cls(error.message, kind=error.kind, retryable=error.retryable)
