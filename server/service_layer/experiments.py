"""The experiment use cases: authenticate, authorize, load, check, store; one transaction each."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from uuid import UUID, uuid4

from server.domain import messages
from server.domain.access import Action, authorize, hash_api_key, token_from_header
from server.domain.errors import NotFound, Unauthenticated
from server.domain.model import Experiment, Principal
from server.domain.pagination import Page, Position, decode_cursor, page_of, page_size
from server.domain.rules import (
    ExperimentInput,
    References,
    parse_uuid,
    referenced_ids,
    validate_new,
    validate_update,
)
from server.service_layer.ports import UnitOfWork

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class ExperimentService:
    """Each method is one RPC's work; `authorization` is the caller's header as sent, unchecked."""

    def __init__(
        self,
        unit_of_work: Callable[[], UnitOfWork],
        clock: Clock = utc_now,
        read_only_unit_of_work: Callable[[], UnitOfWork] | None = None,
    ) -> None:
        self._unit_of_work = unit_of_work
        self._clock = clock
        # Reads may use a cheaper transaction that takes no write lock (SQLite).
        self._read_unit_of_work = read_only_unit_of_work or unit_of_work

    def list(
        self, authorization: str | None, organization_id: str, requested_page_size: int, cursor: str
    ) -> Page[Experiment]:
        with self._read_unit_of_work() as uow:
            organization = self._authorize(uow, authorization, organization_id, Action.READ)
            limit = page_size(requested_page_size)
            start = decode_cursor(cursor)
            items, has_more = uow.experiments.list_page(
                organization,
                limit,
                start.position if start else None,
                backwards=bool(start and start.backwards),
            )
            positions = [Position(e.created_at, e.id) for e in items]
            return page_of(items, positions, has_more, start)

    def get(
        self, authorization: str | None, organization_id: str, experiment_id: str
    ) -> Experiment:
        with self._read_unit_of_work() as uow:
            organization = self._authorize(uow, authorization, organization_id, Action.READ)
            return self._existing(uow, organization, experiment_id)

    def create(
        self, authorization: str | None, organization_id: str, data: ExperimentInput
    ) -> Experiment:
        with self._unit_of_work() as uow:
            principal = self._principal(uow, authorization)
            organization = _authorized_organization(principal, organization_id, Action.WRITE)
            state = validate_new(data, _references(uow, organization, data))
            experiment_id = uuid4()
            uow.experiments.add(experiment_id, organization, state, principal.user.id, self._now())
            created = self._existing(uow, organization, str(experiment_id))
            uow.commit()
            return created

    def update(
        self,
        authorization: str | None,
        organization_id: str,
        experiment_id: str,
        data: ExperimentInput,
    ) -> Experiment:
        with self._unit_of_work() as uow:
            principal = self._principal(uow, authorization)
            organization = _authorized_organization(principal, organization_id, Action.WRITE)
            current = self._existing(uow, organization, experiment_id)
            now = self._now()
            state = validate_update(current, data, _references(uow, organization, data), now)
            uow.experiments.update(current, state, principal.user.id, now)
            updated = self._existing(uow, organization, experiment_id)
            uow.commit()
            return updated

    def delete(self, authorization: str | None, organization_id: str, experiment_id: str) -> None:
        with self._unit_of_work() as uow:
            organization = self._authorize(uow, authorization, organization_id, Action.WRITE)
            identifier = parse_uuid(experiment_id)
            if identifier is None or not uow.experiments.delete(organization, identifier):
                raise NotFound(messages.EXPERIMENT_NOT_FOUND)
            uow.commit()

    def _now(self) -> datetime:
        return self._clock()

    def _principal(self, uow: UnitOfWork, authorization: str | None) -> Principal:
        key = token_from_header(authorization)
        principal = uow.principals.by_key_hash(hash_api_key(key))
        if principal is None:
            raise Unauthenticated()
        return principal

    def _authorize(
        self, uow: UnitOfWork, authorization: str | None, organization_id: str, action: Action
    ) -> UUID:
        return _authorized_organization(
            self._principal(uow, authorization), organization_id, action
        )

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


def _references(uow: UnitOfWork, organization: UUID, data: ExperimentInput) -> References:
    goal_ids, room_ids = referenced_ids(data)
    return References(
        goal_ids=uow.experiments.existing_goal_ids(organization, goal_ids)
        if goal_ids
        else frozenset(),
        room_ids=uow.experiments.existing_room_ids(organization, room_ids)
        if room_ids
        else frozenset(),
    )
