"""The experiment use cases: authenticate, authorize, load, check, store; one transaction each.

Reads answer from the read model (ports.ExperimentViews): stored views, no domain objects.
Writes load the experiment, apply the rules, store it, and store its new view in the same
transaction; they return that view, which is what the client gets back.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from uuid import UUID, uuid4

from server.domain import messages
from server.domain.access import Action, authorize, hash_api_key
from server.domain.clock import Clock, utc_now
from server.domain.concurrency import (
    IDEMPOTENCY_KEY_LIFETIME,
    IdempotentRequest,
    check_if_match,
    check_same_request,
    checked_idempotency_key,
    request_fingerprint,
)
from server.domain.errors import DomainError, NotFound, PreconditionFailed, Unauthenticated
from server.domain.model import Experiment, Principal
from server.domain.pagination import (
    Page,
    Position,
    decode_cursor,
    page_of,
    page_size,
    within_budget,
)
from server.domain.rules import (
    ExperimentInput,
    References,
    parse_uuid,
    referenced_ids,
    validate_new,
    validate_update,
)
from server.service_layer.ports import ExperimentView, ReadUnitOfWork, UnitOfWork


class ExperimentService:
    """Each method is one RPC's work; `api_key` is the caller's key as the entrypoint found it
    in the request (None when there was none), not yet checked: each use case authenticates it
    first, so UNAUTHENTICATED comes before any other answer."""

    def __init__(
        self,
        unit_of_work: Callable[[], UnitOfWork],
        read_unit_of_work: Callable[[], ReadUnitOfWork],
        clock: Clock = utc_now,
    ) -> None:
        self._unit_of_work = unit_of_work
        # Reads get a unit of work that cannot write: no write methods, no commit.
        self._read_unit_of_work = read_unit_of_work
        self._clock = clock

    def list(
        self, api_key: str | None, organization_id: str, requested_page_size: int, cursor: str
    ) -> Page[ExperimentView]:
        with self._read_unit_of_work() as uow:
            organization = self._authorize(uow, api_key, organization_id, Action.READ)
            limit = page_size(requested_page_size)
            start = decode_cursor(cursor)
            items, has_more = uow.views.list_page(
                organization,
                limit,
                start.position if start else None,
                backwards=bool(start and start.backwards),
            )
            positions = [Position(view.created_at, view.id) for view in items]
            page = page_of(items, positions, has_more, start)
        # A page too large for a client or the gateway keeps fewer items; its cursor goes on.
        shortened, _ = within_budget(page, [len(view.message) for view in page.items])
        return shortened

    def get(self, api_key: str | None, organization_id: str, experiment_id: str) -> ExperimentView:
        with self._read_unit_of_work() as uow:
            organization = self._authorize(uow, api_key, organization_id, Action.READ)
            identifier = parse_uuid(experiment_id)
            view = uow.views.get(organization, identifier) if identifier else None
            if view is None:
                raise NotFound(messages.EXPERIMENT_NOT_FOUND)
            return view

    def create(
        self,
        api_key: str | None,
        organization_id: str,
        data: ExperimentInput,
        idempotency_key: str | None = None,
    ) -> ExperimentView:
        """Creates an experiment; with an idempotency key, a retry returns the first one."""
        with self._unit_of_work() as uow:
            principal = self._principal(uow, api_key)
            organization = _authorized_organization(principal, organization_id, Action.WRITE)
            experiment_id = uuid4()
            now = self._now()
            if idempotency_key is not None:
                # Claimed before anything else: a concurrent retry waits here for this one.
                request = IdempotentRequest(request_fingerprint(data), experiment_id)
                earlier = uow.idempotency_keys.claim(
                    organization,
                    principal.user.id,
                    checked_idempotency_key(idempotency_key),
                    request,
                    now,
                    now - IDEMPOTENCY_KEY_LIFETIME,
                )
                if earlier is not None:
                    check_same_request(earlier, request.fingerprint)
                    view = uow.views.get(organization, earlier.experiment_id)
                    if view is None:
                        raise NotFound(messages.EXPERIMENT_NOT_FOUND)
                    return view
            state = validate_new(data, _references(uow, organization, data))
            uow.experiments.add(experiment_id, organization, state, principal.user.id, now)
            view = uow.views.store(self._existing(uow, organization, str(experiment_id)))
            uow.commit()
            return view

    def update(
        self,
        api_key: str | None,
        organization_id: str,
        experiment_id: str,
        data: ExperimentInput,
        if_match: str | None = None,
    ) -> ExperimentView:
        """Replaces the experiment; with If-Match, only if it is still the version named."""
        with self._unit_of_work() as uow:
            principal = self._principal(uow, api_key)
            organization = _authorized_organization(principal, organization_id, Action.WRITE)
            current = self._existing(uow, organization, experiment_id)
            check_if_match(if_match, current)
            now = self._now()
            references = _references(uow, organization, data, current)
            state = validate_update(current, data, references, now)
            expected = current.version if if_match is not None else None
            if not uow.experiments.update(current, state, principal.user.id, now, expected):
                raise self._changed_or_gone(uow, organization, current.id)
            view = uow.views.store(self._existing(uow, organization, experiment_id))
            uow.commit()
            return view

    def delete(
        self,
        api_key: str | None,
        organization_id: str,
        experiment_id: str,
        if_match: str | None = None,
    ) -> None:
        with self._unit_of_work() as uow:
            organization = self._authorize(uow, api_key, organization_id, Action.WRITE)
            if if_match is None:
                identifier = parse_uuid(experiment_id)
                if identifier is None or not uow.experiments.delete(organization, identifier):
                    raise NotFound(messages.EXPERIMENT_NOT_FOUND)
            else:
                current = self._existing(uow, organization, experiment_id)
                check_if_match(if_match, current)
                if not uow.experiments.delete(organization, current.id, current.version):
                    raise self._changed_or_gone(uow, organization, current.id)
            uow.commit()

    @staticmethod
    def _changed_or_gone(uow: UnitOfWork, organization: UUID, experiment_id: UUID) -> DomainError:
        """Why a write found nothing to write: another one changed or deleted it meanwhile."""
        if uow.experiments.get(organization, experiment_id) is None:
            return NotFound(messages.EXPERIMENT_NOT_FOUND)
        return PreconditionFailed(messages.ETAG_MISMATCH)

    def _now(self) -> datetime:
        return self._clock()

    def _principal(self, uow: ReadUnitOfWork, api_key: str | None) -> Principal:
        if not api_key:
            raise Unauthenticated()
        principal = uow.principals.by_key_hash(hash_api_key(api_key))
        if principal is None:
            raise Unauthenticated()
        return principal

    def _authorize(
        self, uow: ReadUnitOfWork, api_key: str | None, organization_id: str, action: Action
    ) -> UUID:
        return _authorized_organization(self._principal(uow, api_key), organization_id, action)

    @staticmethod
    def _existing(uow: UnitOfWork, organization: UUID, experiment_id: str) -> Experiment:
        identifier = parse_uuid(experiment_id)
        experiment = uow.experiments.get(organization, identifier) if identifier else None
        if experiment is None:
            raise NotFound(messages.EXPERIMENT_NOT_FOUND)
        return experiment


def _authorized_organization(principal: Principal, organization_id: str, action: Action) -> UUID:
    authorize(principal, organization_id, action)
    return principal.organization.id


def _references(
    uow: UnitOfWork, organization: UUID, data: ExperimentInput, current: Experiment | None = None
) -> References:
    """Which referenced goals and rooms exist in the organization. Those the current
    experiment already refers to are known to (foreign keys keep them): only the others
    are looked up, so an update that keeps its goal and rooms makes no query here."""
    goal_ids, room_ids = referenced_ids(data)
    known_goals = {current.goal_id} & goal_ids if current and current.goal_id else set()
    known_rooms = {room.id for room in current.rooms} & room_ids if current else set()
    goal_ids -= known_goals
    room_ids -= known_rooms
    return References(
        goal_ids=frozenset(known_goals)
        | (uow.experiments.existing_goal_ids(organization, goal_ids) if goal_ids else frozenset()),
        room_ids=frozenset(known_rooms)
        | (uow.experiments.existing_room_ids(organization, room_ids) if room_ids else frozenset()),
    )
