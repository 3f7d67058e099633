"""The failures a use case reports; the gRPC entrypoint maps each to one status code."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from server.domain import messages


@dataclass(frozen=True)
class FieldViolation:
    """One offending attribute, named as the client wrote it (`groups[1].percentage`)."""

    field: str
    description: str


class DomainError(Exception):
    """Base of the errors a client caused; its message is safe to show the client."""

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


class InvalidArgument(DomainError):
    """Bad input: carries every violation at once, never just the first."""

    def __init__(self, violations: Iterable[FieldViolation]) -> None:
        super().__init__(messages.INVALID_REQUEST)
        self.violations = tuple(violations)
