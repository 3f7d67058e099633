"""The experiments-admin command, run in-process against SQLite and PostgreSQL."""

from __future__ import annotations

import json
import time
from uuid import UUID

import grpc
import pytest
from experiments.v5 import experiments_pb2 as pb
from sqlalchemy import func, select

from server.adapters import database, schema
from server.adapters.orm import ApiKeyRecord, OrganizationRecord
from server.domain.access import hash_api_key
from server.entrypoints import admin
from tests.integration.databases import unit_of_work
from tests.integration.grpc_client import running_client

# Shorter than the default, which the test would otherwise wait out: the rule is the same.
AUTH_CACHE_SECONDS = 1.0


def _run(
    url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *argv: str
) -> str:
    monkeypatch.setenv("EXPERIMENTS_DATABASE_URL", url)
    assert admin.main(list(argv)) == 0
    return capsys.readouterr().out


def _json(
    url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *argv: str
) -> dict[str, object]:
    result = json.loads(_run(url, capsys, monkeypatch, *argv))
    assert isinstance(result, dict)
    return result


def _organizations(url: str) -> int:
    engine = database.make_engine(url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(select(func.count(OrganizationRecord.id))).scalar_one())
    finally:
        engine.dispose()


def test_migrate_command_builds_the_schema_of_the_configured_database(
    database_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    result = _json(database_url, capsys, monkeypatch, "migrate")

    assert result["revision"] == schema.head_revision()
    assert _organizations(database_url) == 0


def test_demo_command_prints_a_fresh_world_with_the_documented_keys(
    migrated_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _json(migrated_url, capsys, monkeypatch, "demo")
    second = _json(migrated_url, capsys, monkeypatch, "demo")

    assert set(first) == {
        "organization_id",
        "goal_id",
        "room_ids",
        "other_organization_id",
        "other_organization_goal_id",
        "inactive_organization_id",
        "tokens",
    }
    tokens = first["tokens"]
    assert isinstance(tokens, dict)
    assert set(tokens) == {
        "settings",
        "no_settings",
        "other_organization",
        "inactive_subscription",
    }
    assert isinstance(first["room_ids"], list)
    assert len(first["room_ids"]) == 2
    assert first["organization_id"] != second["organization_id"]
    assert _organizations(migrated_url) == 6


def test_demo_if_empty_adds_nothing_once_an_organization_exists(
    migrated_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    seeded = _json(migrated_url, capsys, monkeypatch, "demo", "--if-empty")

    again = _run(migrated_url, capsys, monkeypatch, "demo", "--if-empty")

    assert "tokens" in seeded
    assert again == ""
    assert _organizations(migrated_url) == 3


def test_created_user_authenticates_with_the_created_key_which_is_stored_only_hashed(
    migrated_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    organization = _json(migrated_url, capsys, monkeypatch, "create-organization", "--name", "Acme")
    user = _json(
        migrated_url,
        capsys,
        monkeypatch,
        "create-user",
        "--organization-id",
        str(organization["id"]),
        "--first-name",
        "Wile",
        "--last-name",
        "Coyote",
        "--no-settings",
        "--bot",
    )
    key = _json(migrated_url, capsys, monkeypatch, "create-api-key", "--user-id", str(user["id"]))
    goal = _json(
        migrated_url,
        capsys,
        monkeypatch,
        "create-goal",
        "--organization-id",
        str(organization["id"]),
        "--name",
        "Catch",
    )

    engine = database.make_engine(migrated_url)
    try:
        with unit_of_work(engine) as uow:
            principal = uow.principals.by_key_hash(hash_api_key(str(key["api_key"])))
            goals = uow.experiments.goals(
                UUID(str(organization["id"])), {UUID(str(goal["id"]))}
            ).keys()
        with engine.connect() as connection:
            stored = connection.execute(select(ApiKeyRecord.key_hash)).scalars().all()
    finally:
        engine.dispose()

    assert principal is not None
    assert str(principal.user.id) == user["id"]
    assert str(principal.organization.id) == organization["id"]
    assert principal.user.is_bot
    assert principal.can_manage_settings is False
    assert principal.organization.has_active_subscription
    assert len(goals) == 1
    assert stored == [hash_api_key(str(key["api_key"]))]


def test_inactive_organization_has_no_active_subscription(
    migrated_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    organization = _json(
        migrated_url, capsys, monkeypatch, "create-organization", "--name", "Old", "--inactive"
    )

    engine = database.make_engine(migrated_url)
    try:
        with engine.connect() as connection:
            active = connection.execute(
                select(OrganizationRecord.has_active_subscription).where(
                    OrganizationRecord.id == UUID(str(organization["id"]))
                )
            ).scalar_one()
    finally:
        engine.dispose()

    assert active is False


def test_creating_a_user_of_an_unknown_organization_fails_with_a_message(
    migrated_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXPERIMENTS_DATABASE_URL", migrated_url)
    unknown = "00000000-0000-0000-0000-000000000000"

    with pytest.raises(SystemExit, match=f"no organization with id {unknown}"):
        admin.main(
            ["create-user", "--organization-id", unknown, "--first-name", "A", "--last-name", "B"]
        )

    assert _organizations(migrated_url) == 0


def _principal_of(url: str, key: str) -> object:
    engine = database.make_engine(url)
    try:
        with unit_of_work(engine) as uow:
            return uow.principals.by_key_hash(hash_api_key(key))
    finally:
        engine.dispose()


def test_revoke_api_key_by_user_removes_every_key_of_that_user_only(
    migrated_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    organization = _json(migrated_url, capsys, monkeypatch, "create-organization", "--name", "Acme")
    users = [
        _json(
            migrated_url,
            capsys,
            monkeypatch,
            "create-user",
            "--organization-id",
            str(organization["id"]),
            "--first-name",
            name,
            "--last-name",
            "Doe",
        )["id"]
        for name in ("Jane", "John")
    ]
    keys = [
        str(
            _json(migrated_url, capsys, monkeypatch, "create-api-key", "--user-id", str(user))[
                "api_key"
            ]
        )
        for user in (users[0], users[0], users[1])
    ]

    result = _json(migrated_url, capsys, monkeypatch, "revoke-api-key", "--user-id", str(users[0]))

    assert result == {"user_id": users[0], "revoked": 2}
    assert [_principal_of(migrated_url, key) is None for key in keys] == [True, True, False]


def test_revoking_an_unknown_key_fails_with_a_message(
    migrated_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXPERIMENTS_DATABASE_URL", migrated_url)

    with pytest.raises(SystemExit, match="no such API key"):
        admin.main(["revoke-api-key", "--key", "not-a-key"])


def test_a_revoked_key_is_refused_within_the_auth_cache_time(
    migrated_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_client(migrated_url, auth_cache_seconds=AUTH_CACHE_SECONDS) as client:
        request = pb.ListExperimentsRequest(organization_id=client.org)
        client.stub.ListExperiments(request, metadata=client.metadata())  # now cached

        result = _json(
            migrated_url,
            capsys,
            monkeypatch,
            "revoke-api-key",
            "--key",
            client.world.tokens.settings,
        )
        revoked_at = time.monotonic()

        def refused() -> bool:
            try:
                client.stub.ListExperiments(request, metadata=client.metadata())
            except grpc.RpcError as error:
                return error.code() == grpc.StatusCode.UNAUTHENTICATED
            return False

        while not refused():
            assert time.monotonic() - revoked_at < AUTH_CACHE_SECONDS + 1, "still accepted"
            time.sleep(0.1)

    assert result["revoked"] == 1
    # The other demo users' keys still work.
    assert _principal_of(migrated_url, client.world.tokens.no_settings) is not None
