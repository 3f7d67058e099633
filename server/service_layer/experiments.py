"""The experiment use cases: authenticate, authorize, load, check, store; one transaction each.

Reads answer from the read model (ports.ExperimentViews): stored views, no domain objects.
Writes load the experiment, apply the rules, build and render what they will store, then
store it and its view in one short transaction; they return that view, which is what the
client gets back.
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
from server.domain.model import Experiment, Principal, changed_experiment, new_experiment
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
        *,
        render: Callable[[Experiment], ExperimentView],
        clock: Clock = utc_now,
    ) -> None:
        """`render` makes the read model's view of an experiment (the entrypoint's message)."""
        self._unit_of_work = unit_of_work
        # Reads, and writes before their transaction, get a unit of work that cannot write.
        self._read_unit_of_work = read_unit_of_work
        self._render = render
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
        if idempotency_key is not None:
            return self._create_once(api_key, organization_id, data, idempotency_key)
        # Everything but the write happens before the write transaction (on SQLite, the one
        # writer of the file), which then only inserts: nothing it read can have changed
        # meanwhile, since goals and rooms are never deleted and the id is new.
        with self._read_unit_of_work() as reader:
            principal = self._principal(reader, api_key)
            authorize(principal, organization_id, Action.WRITE)
            experiment = self._new_experiment(reader, principal, uuid4(), data)
        view = self._render(experiment)  # before the transaction too
        with self._unit_of_work() as uow:
            return self._add(uow, experiment, view)

    def _create_once(
        self, api_key: str | None, organization_id: str, data: ExperimentInput, key: str
    ) -> ExperimentView:
        """A create with an idempotency key: all in the transaction that claims the key."""
        with self._unit_of_work() as uow:
            principal = self._principal(uow, api_key)
            organization = _authorized_organization(principal, organization_id, Action.WRITE)
            experiment_id = uuid4()
            now = self._now()
            # Claimed before anything else: a concurrent retry waits here for this one.
            request = IdempotentRequest(request_fingerprint(data), experiment_id)
            earlier = uow.idempotency_keys.claim(
                organization,
                principal.user.id,
                checked_idempotency_key(key),
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
            experiment = self._new_experiment(uow, principal, experiment_id, data, now)
            return self._add(uow, experiment, self._render(experiment))

    @staticmethod
    def _add(uow: UnitOfWork, experiment: Experiment, view: ExperimentView) -> ExperimentView:
        """Stores a new experiment and its view, and commits."""
        uow.experiments.add(experiment)
        uow.views.store(view)
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
        """Replaces the experiment; with If-Match, only if it is still the version named.

        All in the write transaction, on the experiment locked as it is: unlike a create,
        preparing it before would race every other writer of the same experiment, and
        under load (many clients updating one experiment) redoing the losers measured
        slower than waiting (bench/README.md). It no longer reads back what it wrote.
        """
        with self._unit_of_work() as uow:
            principal = self._principal(uow, api_key)
            organization = _authorized_organization(principal, organization_id, Action.WRITE)
            current = self._existing(uow, organization, experiment_id, for_update=True)
            check_if_match(if_match, current)
            experiment = self._changed_experiment(uow, principal, current, data)
            view = self._render(experiment)
            if not uow.experiments.update(current, experiment):
                raise RuntimeError("a locked experiment changed")  # the lock forbids it
            uow.views.store(view)
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
        """Why a delete found nothing to delete: another write changed or deleted it meanwhile."""
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
    def _existing(
        uow: ReadUnitOfWork, organization: UUID, experiment_id: str, *, for_update: bool = False
    ) -> Experiment:
        identifier = parse_uuid(experiment_id)
        experiment = (
            uow.experiments.get(organization, identifier, for_update=for_update)
            if identifier
            else None
        )
        if experiment is None:
            raise NotFound(messages.EXPERIMENT_NOT_FOUND)
        return experiment

    def _new_experiment(
        self,
        uow: ReadUnitOfWork,
        principal: Principal,
        experiment_id: UUID,
        data: ExperimentInput,
        now: datetime | None = None,
    ) -> Experiment:
        references = _references(uow, principal.organization.id, data)
        state = validate_new(data, references)
        goal, rooms = references.goal_and_rooms(state)
        return new_experiment(
            experiment_id,
            principal.organization,
            state,
            goal,
            rooms,
            principal.user,
            now or self._now(),
        )

    def _changed_experiment(
        self, uow: ReadUnitOfWork, principal: Principal, current: Experiment, data: ExperimentInput
    ) -> Experiment:
        now = self._now()
        references = _references(uow, current.organization.id, data, current)
        state = validate_update(current, data, references, now)
        goal, rooms = references.goal_and_rooms(state)
        return changed_experiment(current, state, goal, rooms, principal.user, now)


def _authorized_organization(principal: Principal, organization_id: str, action: Action) -> UUID:
    authorize(principal, organization_id, action)
    return principal.organization.id


def _references(
    uow: ReadUnitOfWork,
    organization: UUID,
    data: ExperimentInput,
    current: Experiment | None = None,
) -> References:
    """The referenced goals and rooms that exist in the organization. Those the current
    experiment already refers to are known (foreign keys keep them): only the others are
    looked up, so an update that keeps its goal and rooms makes no query here."""
    goal_ids, room_ids = referenced_ids(data)
    known_goals = {current.goal.id: current.goal} if current and current.goal else {}
    known_rooms = {room.id: room for room in current.rooms} if current else {}
    goal_ids -= known_goals.keys()
    room_ids -= known_rooms.keys()
    return References(
        goals=known_goals | uow.experiments.goals(organization, goal_ids),
        rooms=known_rooms | uow.experiments.rooms(organization, room_ids),
    )
