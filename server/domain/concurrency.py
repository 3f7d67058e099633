"""Optimistic concurrency (etags, If-Match, If-None-Match) and idempotent creates: the rules."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Final, Protocol
from uuid import UUID

from server.domain import messages
from server.domain.errors import FieldViolation, InvalidArgument, PreconditionFailed
from server.domain.model import Experiment
from server.domain.rules import ExperimentInput

IF_MATCH: Final = "if-match"
IF_NONE_MATCH: Final = "if-none-match"
IDEMPOTENCY_KEY: Final = "idempotency-key"

# How long a Create's idempotency key is remembered; a retry after that creates anew.
IDEMPOTENCY_KEY_LIFETIME: Final = timedelta(hours=24)
IDEMPOTENCY_KEY_MAX_LENGTH: Final = 255


@dataclass(frozen=True)
class EntityTags:
    """A parsed If-Match / If-None-Match value: `*`, or a list of (weak?, tag)."""

    any: bool
    strong: frozenset[str]
    weak: frozenset[str]


def parse_entity_tags(header: str, field: str) -> EntityTags:
    """`*`, or a comma list of `"tag"`, `W/"tag"` or a bare `tag` (gRPC clients send the field).

    Raises InvalidArgument naming `field` when no tag can be read.
    """
    strong: set[str] = set()
    weak: set[str] = set()
    any_tag = False
    for item in header.split(","):
        item = item.strip()
        if not item:
            continue
        if item == "*":
            any_tag = True
            continue
        is_weak = item.startswith("W/")
        if is_weak:
            item = item[2:]
        if len(item) >= 2 and item[0] == item[-1] == '"':
            item = item[1:-1]
        if not item or '"' in item:
            raise InvalidArgument([FieldViolation(field, messages.MALFORMED_ETAG)])
        (weak if is_weak else strong).add(item)
    if not (any_tag or strong or weak):
        raise InvalidArgument([FieldViolation(field, messages.MALFORMED_ETAG)])
    return EntityTags(any_tag, frozenset(strong), frozenset(weak))


def check_if_match(if_match: str | None, experiment: Experiment) -> None:
    """Refuses a write whose If-Match does not name the stored version (strong comparison)."""
    if if_match is None:
        return
    tags = parse_entity_tags(if_match, IF_MATCH)
    if not (tags.any or experiment.etag in tags.strong):
        raise PreconditionFailed(messages.ETAG_MISMATCH)


class Tagged(Protocol):
    """Anything with an etag: an experiment, or its stored view."""

    @property
    def etag(self) -> str: ...


def not_modified(if_none_match: str | None, experiment: Tagged) -> bool:
    """True when a read's If-None-Match names the stored version (weak comparison, RFC 9110).

    A malformed value is ignored rather than refused: the full answer is always correct.
    """
    if not if_none_match:
        return False
    try:
        tags = parse_entity_tags(if_none_match, IF_NONE_MATCH)
    except InvalidArgument:
        return False
    return tags.any or experiment.etag in tags.strong or experiment.etag in tags.weak


@dataclass(frozen=True)
class IdempotentRequest:
    """A Create remembered under its idempotency key: what it asked for and what it made."""

    fingerprint: str
    experiment_id: UUID


def checked_idempotency_key(key: str) -> str:
    if not 1 <= len(key) <= IDEMPOTENCY_KEY_MAX_LENGTH:
        raise InvalidArgument(
            [
                FieldViolation(
                    IDEMPOTENCY_KEY,
                    messages.IDEMPOTENCY_KEY_LENGTH.format(limit=IDEMPOTENCY_KEY_MAX_LENGTH),
                )
            ]
        )
    return key


def request_fingerprint(data: ExperimentInput) -> str:
    """A digest of what a Create asked for: the same body gives the same fingerprint."""
    canonical = json.dumps(asdict(data), sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_same_request(earlier: IdempotentRequest, fingerprint: str) -> None:
    """A key names one request: reusing it for a different body is the client's mistake."""
    if earlier.fingerprint != fingerprint:
        raise InvalidArgument([FieldViolation(IDEMPOTENCY_KEY, messages.IDEMPOTENCY_KEY_REUSED)])
