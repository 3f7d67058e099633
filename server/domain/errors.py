"""The failures a use case reports; the gRPC entrypoint maps each to one status code."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from server.domain import limits, messages


@dataclass(frozen=True)
class FieldViolation:
    """One offending attribute, named as the client wrote it (`groups[1].percentage`)."""

    field: str
    description: str


class DomainError(Exception):
    """Base of the errors a use case answers with; its message is safe to show the client."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Unauthenticated(DomainError):
    def __init__(self) -> None:
        super().__init__(messages.UNAUTHENTICATED)


class PermissionDenied(DomainError):
    pass


class NotFound(DomainError):
    pass


class PreconditionFailed(DomainError):
    """The experiment changed since the client read it (a stale etag): read again, then retry."""


class OutOfRange(DomainError):
    """A feed position older than the history kept: the changes after it may be gone."""


class Unavailable(DomainError):
    """The service cannot go on with this call now (the server is stopping): retry elsewhere."""


class InvalidArgument(DomainError):
    """Bad input: carries every violation at once, never just the first.

    Up to a limit: the first MAX_FIELD_VIOLATIONS that fit FIELD_VIOLATIONS_BUDGET_BYTES, then
    one more (field "") saying how many were left out, so the answer always fits a trailer.
    """

    def __init__(self, violations: Iterable[FieldViolation]) -> None:
        super().__init__(messages.INVALID_REQUEST)
        self.violations = _capped(tuple(violations))


class UnreadableRequest(DomainError):
    """The request bytes are not a message of the expected type: no field can be named."""


class RequestTooLarge(DomainError):
    """The request is larger than limits.MAX_REQUEST_BYTES; it was not parsed."""

    def __init__(self) -> None:
        super().__init__(messages.REQUEST_TOO_LARGE.format(limit=limits.MAX_REQUEST_BYTES))


class HeadersTooLarge(DomainError):
    """The request's headers are larger than limits.MAX_HEADER_BYTES; nothing was read."""

    def __init__(self) -> None:
        super().__init__(messages.HEADERS_TOO_LARGE.format(limit=limits.MAX_HEADER_BYTES))


def _capped(violations: tuple[FieldViolation, ...]) -> tuple[FieldViolation, ...]:
    kept: list[FieldViolation] = []
    used = 0
    for violation in violations:
        used += len(violation.field.encode()) + len(violation.description.encode())
        if len(kept) == limits.MAX_FIELD_VIOLATIONS or used > limits.FIELD_VIOLATIONS_BUDGET_BYTES:
            left_out = len(violations) - len(kept)
            kept.append(FieldViolation("", messages.MORE_VIOLATIONS.format(count=left_out)))
            break
        kept.append(violation)
    return tuple(kept)
