"""The `experiments-admin` command: migrate the database and create organizations, users and keys.

Every subcommand prints its result as JSON on stdout, for people and scripts alike.
The database is EXPERIMENTS_DATABASE_URL (server.config), as for the server.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Connection
from sqlalchemy.engine import make_url

from server.adapters import admin, revisions, schema, views
from server.adapters.database import DatabaseUnusable, check_database, make_engine
from server.config import ConfigError, Settings
from server.domain.feed import encode_position
from server.domain.model import Experiment
from server.domain.revisions import first_known
from server.entrypoints.logs import configure_logging
from server.entrypoints.translate import RENDERER, revision_record
from server.service_layer.ports import RevisionRecord

logger = logging.getLogger("experiments.admin")

Command = Callable[[Connection, argparse.Namespace], Any]


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except ConfigError as error:
        raise SystemExit(f"experiments-admin: {error}") from None
    configure_logging(settings.log_level)
    try:
        check_database(settings.database_url)
    except DatabaseUnusable as error:
        raise SystemExit(f"experiments-admin: {error}") from None
    if args.command == "migrate":
        schema.upgrade(settings.database_url)
        # The read model: views missing or rendered by another version of the code.
        rendered = _rebuild_read_model(settings.database_url, everything=False)
        recorded = _record_first_revisions(settings.database_url)
        url = make_url(settings.database_url).render_as_string(hide_password=True)
        _print(
            {
                "database_url": url,
                "revision": schema.head_revision(),
                "views_rendered": rendered,
                "first_revisions_recorded": recorded,
            }
        )
        return 0
    if args.command == "rebuild-read-model":
        _print({"views_rendered": _rebuild_read_model(settings.database_url, everything=True)})
        return 0
    engine = make_engine(settings.database_url)
    try:
        with engine.begin() as connection:
            if (
                args.command == "demo"
                and args.if_empty
                and admin.any_organization_exists(connection)
            ):
                logger.info("The database already has organizations: no demo data added")
                return 0
            result = args.run(connection, args)
    except admin.UnknownRecord as error:
        raise SystemExit(f"experiments-admin {args.command}: {error}") from None
    finally:
        engine.dispose()
    _print(result)
    return 0


def _rebuild_read_model(url: str, *, everything: bool) -> int:
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            return views.rebuild(connection, RENDERER, everything=everything)
    finally:
        engine.dispose()


def _record_first_revisions(url: str) -> int:
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            return revisions.record_first_revisions(connection, _first_revision)
    finally:
        engine.dispose()


def _first_revision(experiment: Experiment) -> RevisionRecord:
    """The `created` revision of an experiment made before revisions were recorded."""
    return revision_record(first_known(experiment), RENDERER.render(experiment))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="experiments-admin",
        description="Administer the Experiments service database (EXPERIMENTS_DATABASE_URL).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser(
        "migrate",
        help="apply the Alembic migrations (upgrade to head), then render the read model's "
        "views that are missing or of an older render version, and (once) record a first "
        "revision for each experiment made before revisions were recorded",
    )
    commands.add_parser(
        "rebuild-read-model",
        help="render every experiment's view again from the tables (after changing an "
        "organization, user, goal or room name in the database by hand)",
    )

    def command(name: str, run: Command, help: str) -> argparse.ArgumentParser:
        subparser = commands.add_parser(name, help=help, description=help)
        subparser.set_defaults(run=run)
        return subparser

    organization = command("create-organization", _create_organization, "create an organization")
    organization.add_argument("--name", required=True)
    organization.add_argument(
        "--inactive", action="store_true", help="without an active subscription"
    )

    user = command("create-user", _create_user, "create a user of an organization")
    user.add_argument("--organization-id", required=True, type=UUID)
    user.add_argument("--first-name", required=True)
    user.add_argument("--last-name", required=True)
    user.add_argument("--no-settings", action="store_true", help="without the settings permission")
    user.add_argument("--bot", action="store_true", help="an integration rather than a person")

    key = command(
        "create-api-key",
        _create_api_key,
        "create an API key for a user; it is shown only this once",
    )
    key.add_argument("--user-id", required=True, type=UUID)

    revoke = command(
        "revoke-api-key",
        _revoke_api_key,
        "revoke an API key, or every key of a user; servers stop accepting it within "
        "EXPERIMENTS_AUTH_CACHE_SECONDS (5 s by default)",
    )
    which = revoke.add_mutually_exclusive_group(required=True)
    which.add_argument("--key", help="the API key itself (write --key=KEY if it starts with -)")
    which.add_argument("--user-id", type=UUID, help="revoke every key of this user")

    for name, run in (("goal", _create_goal), ("room", _create_room)):
        named = command(f"create-{name}", run, f"create a {name} of an organization")
        named.add_argument("--organization-id", required=True, type=UUID)
        named.add_argument("--name", required=True)

    prune = command(
        "prune-history",
        _prune_history,
        "delete the revisions made before a time (every one up to the last such in feed "
        "order); feed cursors older than what remains become OUT_OF_RANGE",
    )
    prune.add_argument(
        "--before",
        required=True,
        type=_aware_time,
        help="an ISO 8601 time with its zone, e.g. 2026-01-01T00:00:00Z",
    )

    demo = command(
        "demo",
        _demo,
        "create a fresh demo world: organizations, goal, rooms, users and their API keys",
    )
    demo.add_argument(
        "--if-empty", action="store_true", help="do nothing if any organization exists"
    )
    return parser


def _create_organization(connection: Connection, args: argparse.Namespace) -> dict[str, str]:
    return {"id": str(admin.create_organization(connection, args.name, active=not args.inactive))}


def _create_user(connection: Connection, args: argparse.Namespace) -> dict[str, str]:
    user_id = admin.create_user(
        connection,
        args.organization_id,
        args.first_name,
        args.last_name,
        can_manage_settings=not args.no_settings,
        is_bot=args.bot,
    )
    return {"id": str(user_id)}


def _create_api_key(connection: Connection, args: argparse.Namespace) -> dict[str, str]:
    return {"user_id": str(args.user_id), "api_key": admin.create_api_key(connection, args.user_id)}


def _revoke_api_key(connection: Connection, args: argparse.Namespace) -> dict[str, Any]:
    if args.key is not None:
        return {"user_id": str(admin.revoke_api_key(connection, args.key)), "revoked": 1}
    revoked = admin.revoke_api_keys_of_user(connection, args.user_id)
    return {"user_id": str(args.user_id), "revoked": revoked}


def _create_goal(connection: Connection, args: argparse.Namespace) -> dict[str, str]:
    return {"id": str(admin.create_goal(connection, args.organization_id, args.name))}


def _create_room(connection: Connection, args: argparse.Namespace) -> dict[str, str]:
    return {"id": str(admin.create_room(connection, args.organization_id, args.name))}


def _aware_time(value: str) -> datetime:
    """--before: a time with its zone, never a local time that depends on where it runs."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {value!r}") from None
    if parsed.tzinfo is None:
        raise argparse.ArgumentTypeError(f"give the time zone (Z or +01:00): {value!r}")
    return parsed


def _prune_history(connection: Connection, args: argparse.Namespace) -> dict[str, Any]:
    deleted, horizon = revisions.prune(connection, args.before)
    return {"revisions_deleted": deleted, "oldest_valid_cursor": encode_position(horizon)}


def _demo(connection: Connection, args: argparse.Namespace) -> dict[str, Any]:
    return admin.create_demo_world(connection).to_json()


def _print(result: Any) -> None:
    json.dump(result, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    sys.exit(main())
