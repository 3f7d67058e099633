"""The experiment use cases: authenticate, authorize, load, check, store; one transaction each.

Reads answer from the read model (ports.ExperimentViews): stored views, no domain objects.
Writes load the experiment, apply the rules, build and render what they will store, then
store it, its view and its revision (domain.revisions) in one short transaction; they
return that view, which is what the client gets back. The history (revisions of one
experiment) and the change feed (revisions of an organization, in commit order) are read
from the revisions; a watch follows the feed through the worker's FeedFollower.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from typing import Final
from uuid import UUID, uuid4

from server.domain import messages, revisions
from server.domain.access import Action, authorize, hash_api_key
from server.domain.assignment import Assigned, assign_all, checked_request, micros
from server.domain.clock import Clock, utc_now
from server.domain.concurrency import (
    IDEMPOTENCY_KEY_LIFETIME,
    IdempotentRequest,
    check_if_match,
    check_same_request,
    checked_idempotency_key,
    request_fingerprint,
)
from server.domain.errors import (
    DomainError,
    NotFound,
    PreconditionFailed,
    Unauthenticated,
    Unavailable,
)
from server.domain.feed import check_kept, check_reached, decode_position
from server.domain.model import Experiment, Principal, changed_experiment, new_experiment
from server.domain.pagination import (
    Page,
    Position,
    decode_cursor,
    decode_revision_cursor,
    page_of,
    page_size,
    within_budget,
)
from server.domain.revisions import Revision
from server.domain.rules import (
    ExperimentInput,
    References,
    parse_uuid,
    referenced_ids,
    validate_new,
    validate_update,
)
from server.service_layer.assignments import AssignmentCache
from server.service_layer.feed import FeedFollower
from server.service_layer.ports import (
    Change,
    ExperimentView,
    ReadUnitOfWork,
    RevisionRecord,
    UnitOfWork,
)
from server.service_layer.watches import MIN_RECHECK_SECONDS, AccessChecks, Watch

# Renders a revision (with the serialized experiment it shows) as the history stores it.
RecordRevision = Callable[[Revision, bytes], RevisionRecord]

# A watch catching up from the database reads this many changes at a time (bounded memory).
CATCH_UP_PAGE: Final = 25
# Experiments stored per transaction by import_experiments.
IMPORT_BATCH: Final = 500


@dataclass(frozen=True)
class ChangesPage:
    """A page of the change feed: the changes, and the position to continue from."""

    changes: tuple[Change, ...]
    next_position: int


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
        record: RecordRevision,
        clock: Clock = utc_now,
        follower: FeedFollower | None = None,
        access_checks: AccessChecks | None = None,
        feed_unit_of_work: Callable[[], ReadUnitOfWork] | None = None,
        heartbeat_seconds: float = 15.0,
        assignments: AssignmentCache | None = None,
    ) -> None:
        """`render` makes the read model's view of an experiment and `record` a revision as
        stored (the entrypoint's messages). `follower` reads the feed for watches (and is
        nudged after each write), `access_checks` checks their keys again; without them, a
        watch is UNAVAILABLE. Watches read the database (starting, catching up) on
        `feed_unit_of_work`, by default the reads' own. `assignments` is the worker's cache
        of the experiments that assign visitors (told of each write); without it,
        AssignVisitor is UNAVAILABLE."""
        self._unit_of_work = unit_of_work
        # Reads, and writes before their transaction, get a unit of work that cannot write.
        self._read_unit_of_work = read_unit_of_work
        self._render = render
        self._record = record
        self._clock = clock
        self._follower = follower
        self._access_checks = access_checks
        self._feed_unit_of_work = feed_unit_of_work or read_unit_of_work
        self._heartbeat_seconds = heartbeat_seconds
        self._assignments = assignments

    def list(
        self, api_key: str | None, organization_id: str, requested_page_size: int, cursor: str
    ) -> Page[ExperimentView, Position]:
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
        # Before the transaction too, with its revision.
        view, record = self._rendered(experiment, revisions.creation(experiment))
        with self._unit_of_work() as uow:
            return self._add(uow, experiment, view, record)

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
            view, record = self._rendered(experiment, revisions.creation(experiment))
            return self._add(uow, experiment, view, record)

    def _add(
        self, uow: UnitOfWork, experiment: Experiment, view: ExperimentView, record: RevisionRecord
    ) -> ExperimentView:
        """Stores a new experiment, its view and its revision, and commits."""
        uow.experiments.add(experiment)
        uow.views.store(view)
        self._commit(uow, [record])
        return view

    def _rendered(
        self, experiment: Experiment, revision: Revision
    ) -> tuple[ExperimentView, RevisionRecord]:
        """The experiment's view, and the revision's record holding that view."""
        view = self._render(experiment)
        return view, self._record(revision, view.message)

    def _commit(self, uow: UnitOfWork, records: Sequence[RevisionRecord]) -> None:
        """Appends the write's revisions, the last statement before the commit (on PostgreSQL
        it queues writers from there to the commit: see server/adapters/revisions.py), commits,
        and tells this worker's follower that there is something new to read, and its
        assignment cache where the write is (so that the worker's next assignment shows it)."""
        position = uow.revisions.append(records)
        uow.commit()
        if self._assignments is not None:
            for organization_id in {record.organization_id for record in records}:
                self._assignments.written(organization_id, position)
        if self._follower is not None:
            self._follower.nudge()

    def import_experiments(self, experiments: Iterable[Experiment]) -> int:
        """Stores experiments made elsewhere, already valid (domain.model.new_experiment), as
        a create stores them: each with its view and its `created` revision, IMPORT_BATCH
        per transaction. For trusted callers only (bench/seed.py): nothing is checked.
        Returns how many were stored."""
        stored = 0
        remaining = iter(experiments)
        while batch := tuple(islice(remaining, IMPORT_BATCH)):
            views = [self._render(experiment) for experiment in batch]
            with self._unit_of_work() as uow:
                for experiment, view in zip(batch, views, strict=True):
                    uow.experiments.add(experiment)
                    uow.views.store(view)
                records = [
                    self._record(revisions.creation(experiment), view.message)
                    for experiment, view in zip(batch, views, strict=True)
                ]
                self._commit(uow, records)
            stored += len(batch)
        return stored

    def update(
        self,
        api_key: str | None,
        organization_id: str,
        experiment_id: str,
        data: ExperimentInput,
        if_match: str | None = None,
    ) -> ExperimentView:
        """Replaces the experiment; with If-Match, only if it is still the version named.

        Prepared (authenticated, loaded, checked, rendered) on a read connection, outside the
        write transaction, as a create is: SQLite's one writer is held only for the writes.
        An update that changes nothing never takes it: it answers the view of the version it
        read. The write is a compare-and-set on the version read; if another write came in
        between, the update is done again inside the transaction, on the experiment locked
        as it is (as every update was before: many clients updating one experiment then
        prepare twice, bench/README.md).
        """
        with self._read_unit_of_work() as reader:
            organization, current, experiment, revision = self._prepared_update(
                reader, api_key, organization_id, experiment_id, data, if_match
            )
            if revision is None:
                # Nothing changes: no write, no revision; the same etag and updated_at.
                view = reader.views.get(organization, current.id)
                if view is not None and view.version == current.version:
                    return view
        prepared = None if revision is None else self._rendered(experiment, revision)
        with self._unit_of_work() as uow:
            if prepared is not None and self._stored_update(uow, current, experiment, *prepared):
                return prepared[0]
            # Another write came in between: the update again, on the experiment locked.
            organization, current, experiment, revision = self._prepared_update(
                uow, api_key, organization_id, experiment_id, data, if_match, for_update=True
            )
            if revision is None:
                return uow.views.get(organization, current.id) or self._render(current)
            view, record = self._rendered(experiment, revision)
            if not self._stored_update(uow, current, experiment, view, record):
                raise RuntimeError("a locked experiment changed")  # the lock forbids it
            return view

    def _prepared_update(
        self,
        uow: ReadUnitOfWork,
        api_key: str | None,
        organization_id: str,
        experiment_id: str,
        data: ExperimentInput,
        if_match: str | None,
        *,
        for_update: bool = False,
    ) -> tuple[UUID, Experiment, Experiment, Revision | None]:
        """The organization, the experiment as it is and as the update makes it, and the
        update's revision (None when it changes nothing)."""
        principal = self._principal(uow, api_key)
        organization = _authorized_organization(principal, organization_id, Action.WRITE)
        current = self._existing(uow, organization, experiment_id, for_update=for_update)
        check_if_match(if_match, current)
        experiment = self._changed_experiment(uow, principal, current, data)
        return organization, current, experiment, revisions.update(current, experiment)

    def _stored_update(
        self,
        uow: UnitOfWork,
        current: Experiment,
        experiment: Experiment,
        view: ExperimentView,
        record: RevisionRecord,
    ) -> bool:
        """Writes the update if the experiment is still the version `current` (a compare-and-
        set), with its view and revision, and commits; False if another write came first."""
        if not uow.experiments.update(current, experiment):
            return False
        uow.views.store(view)
        self._commit(uow, [record])
        return True

    def delete(
        self,
        api_key: str | None,
        organization_id: str,
        experiment_id: str,
        if_match: str | None = None,
    ) -> None:
        """Deletes the experiment (its revisions stay); with If-Match, only if it is still the
        version named. On the experiment locked as it is, since its revision shows it."""
        with self._unit_of_work() as uow:
            principal = self._principal(uow, api_key)
            organization = _authorized_organization(principal, organization_id, Action.WRITE)
            current = self._existing(uow, organization, experiment_id, for_update=True)
            check_if_match(if_match, current)
            if not uow.experiments.delete(organization, current.id, current.version):
                raise self._changed_or_gone(uow, organization, current.id)
            revision = revisions.deletion(current, principal.user, self._now())
            self._commit(uow, [self._record(revision, self._render(current).message)])

    @staticmethod
    def _changed_or_gone(uow: UnitOfWork, organization: UUID, experiment_id: UUID) -> DomainError:
        """Why a delete found nothing to delete: another write changed or deleted it meanwhile
        (SQLite's writers cannot interleave, nor PostgreSQL's on a locked row: a safeguard)."""
        if uow.experiments.get(organization, experiment_id) is None:
            return NotFound(messages.EXPERIMENT_NOT_FOUND)
        return PreconditionFailed(messages.ETAG_MISMATCH)

    # --- visitor assignment ------------------------------------------------------------------

    def assign(
        self,
        api_key: str | None,
        organization_id: str,
        visitor_id: str,
        room_id: str,
        at: tuple[int, int] | None,
    ) -> Sequence[Assigned[bytes]]:
        """The visitor's group in each experiment of the organization that applies at `at`
        (seconds and nanos; now when None) in the room (empty: none), from the worker's
        cache; access as for Get. See domain.assignment and service_layer.assignments."""
        with self._read_unit_of_work() as uow:
            organization = self._authorize(uow, api_key, organization_id, Action.READ)
        request = checked_request(visitor_id, room_id, at)
        if self._assignments is None:
            raise Unavailable(messages.UNAVAILABLE)
        now = self._now()
        moment = micros(now) if request.at is None else request.at
        experiments = self._assignments.experiments(organization, moment, now)
        return assign_all(experiments, request.visitor, request.room_id, moment)

    # --- history and the change feed ---------------------------------------------------------

    def list_revisions(
        self,
        api_key: str | None,
        organization_id: str,
        experiment_id: str,
        requested_page_size: int,
        cursor: str,
    ) -> Page[Change, int]:
        """The experiment's revisions, newest first, paged like the list; its history stays
        after a delete, so only an id the organization never had (or whose history was all
        pruned, and which no longer exists) is NOT_FOUND."""
        with self._read_unit_of_work() as uow:
            organization = self._authorize(uow, api_key, organization_id, Action.READ)
            identifier = parse_uuid(experiment_id)
            if identifier is None:
                raise NotFound(messages.EXPERIMENT_NOT_FOUND)
            limit = page_size(requested_page_size)
            start = decode_revision_cursor(cursor)
            items, has_more = uow.revisions.of_experiment(
                organization,
                identifier,
                limit,
                start.position if start else None,
                backwards=bool(start and start.backwards),
            )
            if not items and not self._known(uow, organization, identifier, start is None):
                raise NotFound(messages.EXPERIMENT_NOT_FOUND)
            page = page_of(items, [change.position for change in items], has_more, start)
        shortened, _ = within_budget(page, [len(change.message) for change in page.items])
        return shortened

    @staticmethod
    def _known(uow: ReadUnitOfWork, organization: UUID, experiment_id: UUID, looked: bool) -> bool:
        """Whether the organization has or had the experiment: it exists, or it has revisions
        (`looked`: the first page was just read, and it had none)."""
        if uow.views.get(organization, experiment_id) is not None:
            return True
        return not looked and bool(
            uow.revisions.of_experiment(organization, experiment_id, 1, None, False)[0]
        )

    def list_changes(
        self, api_key: str | None, organization_id: str, after: str, requested_page_size: int
    ) -> ChangesPage:
        """The organization's changes after `after` (from the oldest kept when empty), oldest
        first, and where to continue: past this page, or as far as the feed had gone when
        the page was read if it holds the last changes."""
        with self._read_unit_of_work() as uow:
            organization = self._authorize(uow, api_key, organization_id, Action.READ)
            limit = page_size(requested_page_size)
            start = decode_position(after)
            # Read before the page: every change up to this head is in the page if it is short.
            before = uow.revisions.bounds()
            position = start if start is not None else before.horizon
            changes = uow.revisions.after(organization, position, limit)
            # Read after the page: a prune that ran meanwhile may have deleted some of it.
            bounds = uow.revisions.bounds() if start is not None else before
        if start is not None:
            check_reached(start, bounds.head)
            check_kept(start, bounds.horizon)
        kept, _ = within_budget(
            page_of(changes, [c.position for c in changes], False, None),
            [len(change.message) for change in changes],
        )
        items = kept.items
        if len(items) < len(changes) or len(changes) == limit:
            next_position = items[-1].position
        else:
            next_position = max([position, before.head, *(c.position for c in items)])
        return ChangesPage(items, next_position)

    def watch(self, api_key: str | None, organization_id: str, after: str) -> Watch:
        """Checks the call (key, access, cursor) and opens a watch of the organization's
        changes after `after` (now when empty): iterate it for Heartbeat and Change events;
        see watches.Watch."""
        follower, checks = self._follower, self._access_checks
        if follower is None or checks is None or follower.closed:
            raise Unavailable(messages.STOPPING)
        with self._feed_unit_of_work() as uow:
            principal = self._principal(uow, api_key)
            organization = _authorized_organization(principal, organization_id, Action.READ)
            start = decode_position(after)
            bounds = uow.revisions.bounds()
            trusted = uow.principals.trusted_for(hash_api_key(api_key or ""))
        position = bounds.head if start is None else start
        check_reached(position, bounds.head)
        check_kept(position, bounds.horizon)
        return Watch(
            follower,
            checks,
            self.catch_up,
            self._heartbeat_seconds,
            api_key=api_key or "",
            organization_id=organization_id,
            organization=organization,
            position=position,
            check_in=trusted if trusted > 0 else MIN_RECHECK_SECONDS,
        )

    def catch_up(self, organization: UUID, position: int) -> tuple[Sequence[Change], int]:
        """A page of the organization's changes after `position` from the database, and the
        position they bring the reader to; OutOfRange if pruning removed some of them."""
        with self._feed_unit_of_work() as uow:
            before = uow.revisions.bounds()
            changes = uow.revisions.after(organization, position, CATCH_UP_PAGE)
            after = uow.revisions.bounds()
        check_kept(position, after.horizon)
        if len(changes) == CATCH_UP_PAGE:
            return changes, changes[-1].position
        return changes, max([position, before.head, *(c.position for c in changes)])

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
    found = uow.experiments.references(
        organization, goal_ids - known_goals.keys(), room_ids - known_rooms.keys()
    )
    return References(goals=known_goals | dict(found.goals), rooms=known_rooms | dict(found.rooms))
