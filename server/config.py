"""Settings from the environment, read once, with defaults that run on a laptop."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

# The checkout's git-ignored data folder holds the embedded SQLite database.
DATA_DIR = Path(__file__).resolve().parent.parent / "data"
DEFAULT_DATABASE_URL = f"sqlite:///{DATA_DIR / 'experiments.sqlite3'}"


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# Below the gateway's 60 s idle timeout of watch streams (gateway/envoy.yaml), with a margin.
MAX_WATCH_HEARTBEAT_SECONDS = 50.0
# Beyond this a watch's lag (from another worker's write) would no longer be "at once".
MAX_FEED_POLL_SECONDS = 5.0


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Every setting, with the default a laptop needs; `from_env` reads them once, in `main`."""

    database_url: str = DEFAULT_DATABASE_URL
    grpc_host: str = "127.0.0.1"
    grpc_port: int = 50051
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    # Where list pages' next/previous point, over REST and gRPC alike. Never taken from the
    # request's Host, which any client can forge. from_env derives it from http_host/http_port.
    public_base_url: str = "http://127.0.0.1:8080"
    log_level: str = "INFO"
    # Threads per worker process for reads: enough to overlap database waits, few enough for
    # the GIL.
    threads: int = 8
    # Threads per worker process for writes (Create, Update, Delete), apart from the reads':
    # a write waiting for the database holds one of these, never one a read needs.
    write_threads: int = 4
    # Unary calls a worker holds at once, running or waiting for one of its threads, for reads
    # and for writes each; beyond that a call is refused at once with RESOURCE_EXHAUSTED (REST
    # 429) rather than queued behind work it would wait seconds for.
    max_calls: int = 64
    # Streams a worker holds open at once (each has a thread of its own, idle while it waits).
    max_streams: int = 1000
    # How long a worker may reuse an API key's user, organization and permissions.
    auth_cache_seconds: float = 5.0
    # How long a stopping server lets calls in flight finish before it cancels them.
    grace_seconds: float = 10.0
    # How long a server that got SIGTERM keeps serving while it reports NOT_SERVING, before it
    # stops taking calls: long enough for the gateway's health check (every second, and a
    # NOT_SERVING answer counts at once) and clients' health watches to send traffic elsewhere.
    drain_seconds: float = 4.0
    # Database connections each worker process keeps open: the reads' pool (a read thread or a
    # write thread preparing a create holds one), the writes' pool (one per write thread), and
    # the overflow each of those two may open beyond its pool under a burst. None: as many as
    # the threads that use them (threads + write_threads; write_threads). README, "Connection
    # budget", adds them up against PostgreSQL's max_connections.
    database_pool_size: int | None = None
    database_write_pool_size: int | None = None
    database_max_overflow: int = 10
    # A watch sends a heartbeat when it has sent nothing for this long: below the gateway's
    # idle timeout for watches (gateway/envoy.yaml), so that no proxy cuts a quiet stream.
    watch_heartbeat_seconds: float = 15.0
    # How often a worker reads new changes from the database (its own writes: at once).
    feed_poll_seconds: float = 0.1
    # Each worker process pinned to a CPU of its own (off: containers often limit CPUs in
    # other ways than the CPUs a process may use, and pinning then does harm).
    worker_affinity: bool = False
    # Browser origins (scheme://host[:port]) allowed to call the REST gateway; none: no CORS.
    cors_origins: tuple[str, ...] = ()
    # experiments-gateway's instances: comma-separated host:port (gateway/upstreams.py).
    upstreams: str = ""
    # The DNS server (an address and port) experiments-gateway asks for the names in
    # `upstreams`; empty: the system's resolvers.
    upstreams_resolver: str = ""

    @property
    def read_pool_size(self) -> int:
        """Connections of a worker's read pool (EXPERIMENTS_DATABASE_POOL_SIZE)."""
        if self.database_pool_size is not None:
            return self.database_pool_size
        return self.threads + self.write_threads

    @property
    def write_pool_size(self) -> int:
        """Connections of a worker's write pool (EXPERIMENTS_DATABASE_WRITE_POOL_SIZE)."""
        if self.database_write_pool_size is not None:
            return self.database_write_pool_size
        return self.write_threads

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        """The settings of EXPERIMENTS_* in `env`; raises ConfigError naming a bad variable."""
        default = cls()
        http_host = env.get("EXPERIMENTS_HTTP_HOST", default.http_host)
        http_port = _number(env, "EXPERIMENTS_HTTP_PORT", default.http_port)
        return cls(
            database_url=env.get("EXPERIMENTS_DATABASE_URL") or default.database_url,
            grpc_host=env.get("EXPERIMENTS_GRPC_HOST", default.grpc_host),
            grpc_port=_number(env, "EXPERIMENTS_GRPC_PORT", default.grpc_port),
            http_host=http_host,
            http_port=http_port,
            workers=_number(env, "EXPERIMENTS_WORKERS", default.workers),
            public_base_url=env.get(
                "EXPERIMENTS_PUBLIC_BASE_URL", f"http://{http_host}:{http_port}"
            ).rstrip("/"),
            log_level=log_level(env.get("EXPERIMENTS_LOG_LEVEL", default.log_level)),
            threads=_number(env, "EXPERIMENTS_THREADS", default.threads),
            write_threads=_number(env, "EXPERIMENTS_WRITE_THREADS", default.write_threads),
            max_calls=_number(env, "EXPERIMENTS_MAX_CALLS", default.max_calls),
            max_streams=_number(env, "EXPERIMENTS_MAX_STREAMS", default.max_streams),
            auth_cache_seconds=_number(
                env, "EXPERIMENTS_AUTH_CACHE_SECONDS", default.auth_cache_seconds
            ),
            grace_seconds=_number(env, "EXPERIMENTS_GRACE_SECONDS", default.grace_seconds),
            drain_seconds=_at_least_zero(env, "EXPERIMENTS_DRAIN_SECONDS", default.drain_seconds),
            database_pool_size=_optional_count(env, "EXPERIMENTS_DATABASE_POOL_SIZE"),
            database_write_pool_size=_optional_count(env, "EXPERIMENTS_DATABASE_WRITE_POOL_SIZE"),
            database_max_overflow=_at_least_zero(
                env, "EXPERIMENTS_DATABASE_MAX_OVERFLOW", default.database_max_overflow
            ),
            watch_heartbeat_seconds=_within(
                env,
                "EXPERIMENTS_WATCH_HEARTBEAT_SECONDS",
                default.watch_heartbeat_seconds,
                MAX_WATCH_HEARTBEAT_SECONDS,
            ),
            feed_poll_seconds=_within(
                env,
                "EXPERIMENTS_FEED_POLL_SECONDS",
                default.feed_poll_seconds,
                MAX_FEED_POLL_SECONDS,
            ),
            cors_origins=cors_origins(env.get("EXPERIMENTS_CORS_ORIGINS", "")),
            upstreams=env.get("EXPERIMENTS_UPSTREAMS", default.upstreams),
            upstreams_resolver=env.get(
                "EXPERIMENTS_UPSTREAMS_RESOLVER", default.upstreams_resolver
            ),
            worker_affinity=_flag(env, "EXPERIMENTS_WORKER_AFFINITY", default.worker_affinity),
        )


def log_level(value: str) -> str:
    """EXPERIMENTS_LOG_LEVEL: one of LOG_LEVELS, in any case."""
    level = value.strip().upper()
    if level not in LOG_LEVELS:
        raise ConfigError(
            f"EXPERIMENTS_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {value!r}"
        )
    return level


def cors_origins(value: str) -> tuple[str, ...]:
    """EXPERIMENTS_CORS_ORIGINS: comma-separated origins such as https://app.example.com."""
    origins = tuple(origin.strip().rstrip("/") for origin in value.split(",") if origin.strip())
    for origin in origins:
        scheme, separator, host = origin.partition("://")
        if scheme not in ("http", "https") or not separator or not host or "/" in host:
            raise ConfigError(
                f"EXPERIMENTS_CORS_ORIGINS: {origin!r} is not an origin; write each as "
                "scheme://host[:port], e.g. https://app.example.com, separated by commas"
            )
    return origins


class ConfigError(ValueError):
    """A setting that cannot be used; the message is one line naming the variable."""


_Number = TypeVar("_Number", int, float)


def _number(env: Mapping[str, str], name: str, default: _Number) -> _Number:
    value = env.get(name)
    if not value:
        return default
    try:
        return type(default)(value)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {value!r}") from None


def _within(env: Mapping[str, str], name: str, default: float, maximum: float) -> float:
    """A number of seconds above 0 and at most `maximum`."""
    value = _number(env, name, default)
    if not 0 < value <= maximum:
        raise ConfigError(f"{name} must be more than 0 and at most {maximum:g}, got {value:g}")
    return value


def _at_least_zero(env: Mapping[str, str], name: str, default: _Number) -> _Number:
    value = _number(env, name, default)
    if value < 0:
        raise ConfigError(f"{name} must be 0 or more, got {value:g}")
    return value


def _optional_count(env: Mapping[str, str], name: str) -> int | None:
    """A number of connections of at least 1, or None when the variable is not set."""
    if not env.get(name):
        return None
    value = _number(env, name, 0)
    if value < 1:
        raise ConfigError(f"{name} must be 1 or more, got {value}")
    return value


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    value = env.get(name, "").strip().lower()
    if not value:
        return default
    if value not in _TRUE + _FALSE:
        raise ConfigError(f"{name} must be 1 or 0 (true or false), got {env[name]!r}")
    return value in _TRUE
