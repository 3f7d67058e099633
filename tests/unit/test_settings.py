"""Settings from the environment: laptop defaults, derived public URL, validated values."""

from __future__ import annotations

import pytest

from server.adapters.database import DatabaseUnusable, make_engine
from server.config import DEFAULT_DATABASE_URL, ConfigError, Settings


def test_nothing_set_gives_the_laptop_defaults() -> None:
    settings = Settings.from_env({})

    assert settings.database_url == DEFAULT_DATABASE_URL
    assert (settings.grpc_host, settings.grpc_port) == ("127.0.0.1", 50051)
    assert settings.public_base_url == "http://127.0.0.1:8080"
    assert settings.log_level == "INFO"


def test_the_public_url_follows_the_http_address_unless_set() -> None:
    derived = Settings.from_env({"EXPERIMENTS_HTTP_HOST": "0.0.0.0", "EXPERIMENTS_HTTP_PORT": "9"})
    explicit = Settings.from_env({"EXPERIMENTS_PUBLIC_BASE_URL": "https://api.example.com/"})

    assert derived.public_base_url == "http://0.0.0.0:9"
    assert explicit.public_base_url == "https://api.example.com"


@pytest.mark.parametrize(
    ("value", "pinned"), [("1", True), ("true", True), ("0", False), ("", False)]
)
def test_worker_affinity_is_a_flag_and_off_by_default(value: str, pinned: bool) -> None:
    assert Settings.from_env({"EXPERIMENTS_WORKER_AFFINITY": value}).worker_affinity is pinned


def test_a_log_level_in_any_case_is_accepted() -> None:
    assert Settings.from_env({"EXPERIMENTS_LOG_LEVEL": "debug"}).log_level == "DEBUG"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("EXPERIMENTS_LOG_LEVEL", "verbose"),
        ("EXPERIMENTS_GRPC_PORT", "fifty"),
        ("EXPERIMENTS_CORS_ORIGINS", "app.example.com"),
        ("EXPERIMENTS_WORKERS", "many"),
        ("EXPERIMENTS_AUTH_CACHE_SECONDS", "5s"),
        ("EXPERIMENTS_GRACE_SECONDS", "soon"),
        ("EXPERIMENTS_WATCH_HEARTBEAT_SECONDS", "0"),
        # Above the gateway's idle timeout for watches, which would cut quiet streams.
        ("EXPERIMENTS_WATCH_HEARTBEAT_SECONDS", "50.5"),
        ("EXPERIMENTS_FEED_POLL_SECONDS", "-1"),
        ("EXPERIMENTS_FEED_POLL_SECONDS", "6"),
        ("EXPERIMENTS_WRITE_THREADS", "four"),
        ("EXPERIMENTS_WORKER_AFFINITY", "pinned"),
    ],
)
def test_an_unusable_value_is_refused_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env({variable: value})


def test_heartbeats_and_polls_may_be_set_within_their_bounds() -> None:
    settings = Settings.from_env(
        {"EXPERIMENTS_WATCH_HEARTBEAT_SECONDS": "50", "EXPERIMENTS_FEED_POLL_SECONDS": "0.05"}
    )

    assert (settings.watch_heartbeat_seconds, settings.feed_poll_seconds) == (50.0, 0.05)
    assert (Settings().watch_heartbeat_seconds, Settings().feed_poll_seconds) == (15.0, 0.1)


def test_pool_sizes_follow_the_threads_unless_set() -> None:
    derived = Settings.from_env({"EXPERIMENTS_THREADS": "6", "EXPERIMENTS_WRITE_THREADS": "2"})
    explicit = Settings.from_env(
        {
            "EXPERIMENTS_DATABASE_POOL_SIZE": "3",
            "EXPERIMENTS_DATABASE_WRITE_POOL_SIZE": "1",
            "EXPERIMENTS_DATABASE_MAX_OVERFLOW": "0",
        }
    )

    assert (derived.read_pool_size, derived.write_pool_size) == (8, 2)
    assert (explicit.read_pool_size, explicit.write_pool_size) == (3, 1)
    assert explicit.database_max_overflow == 0


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("EXPERIMENTS_DATABASE_POOL_SIZE", "0"),
        ("EXPERIMENTS_DATABASE_WRITE_POOL_SIZE", "many"),
        ("EXPERIMENTS_DATABASE_MAX_OVERFLOW", "-1"),
        ("EXPERIMENTS_DRAIN_SECONDS", "-2"),
    ],
)
def test_a_pool_size_or_drain_that_cannot_be_used_is_named(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env({variable: value})


def test_a_prepare_threshold_in_the_database_url_that_is_not_none_or_a_number_is_named() -> None:
    with pytest.raises(DatabaseUnusable, match="prepare_threshold"):
        make_engine("postgresql+psycopg://postgres@127.0.0.1/db?prepare_threshold=soon")
