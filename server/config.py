"""Settings from the environment, read once, with defaults that run on a laptop."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

# The checkout's git-ignored data folder holds the embedded SQLite database.
DATA_DIR = Path(__file__).resolve().parent.parent / "data"
DEFAULT_DATABASE_URL = f"sqlite:///{DATA_DIR / 'experiments.sqlite3'}"


@dataclass(frozen=True)
class Settings:
    database_url: str
    grpc_host: str
    grpc_port: int
    http_host: str
    http_port: int
    workers: int
    # Where list pages' next/previous point, over REST and gRPC alike. Never taken from the
    # request's Host, which any client can forge.
    public_base_url: str
    log_level: str
    # Threads per worker process: enough to overlap database waits, few enough for the GIL.
    threads: int = 8
    # How long a worker may reuse an API key's user, organization and permissions.
    auth_cache_seconds: float = 5.0
    # Browser origins (scheme://host[:port]) allowed to call the REST gateway; none: no CORS.
    cors_origins: tuple[str, ...] = ()

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        http_host = env.get("EXPERIMENTS_HTTP_HOST", "127.0.0.1")
        http_port = _number(env, "EXPERIMENTS_HTTP_PORT", 8080)
        return cls(
            database_url=env.get("EXPERIMENTS_DATABASE_URL") or DEFAULT_DATABASE_URL,
            grpc_host=env.get("EXPERIMENTS_GRPC_HOST", "127.0.0.1"),
            grpc_port=_number(env, "EXPERIMENTS_GRPC_PORT", 50051),
            http_host=http_host,
            http_port=http_port,
            workers=_number(env, "EXPERIMENTS_WORKERS", os.cpu_count() or 1),
            public_base_url=env.get(
                "EXPERIMENTS_PUBLIC_BASE_URL", f"http://{http_host}:{http_port}"
            ).rstrip("/"),
            log_level=env.get("EXPERIMENTS_LOG_LEVEL", "INFO"),
            threads=_number(env, "EXPERIMENTS_THREADS", cls.threads),
            auth_cache_seconds=_number(
                env, "EXPERIMENTS_AUTH_CACHE_SECONDS", cls.auth_cache_seconds
            ),
            cors_origins=cors_origins(env.get("EXPERIMENTS_CORS_ORIGINS", "")),
        )


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


def _number(env: os._Environ[str], name: str, default: _Number) -> _Number:
    value = env.get(name)
    if not value:
        return default
    try:
        return type(default)(value)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
