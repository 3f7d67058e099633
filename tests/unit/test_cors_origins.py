"""EXPERIMENTS_CORS_ORIGINS: a comma-separated list of exact origins, or nothing."""

from __future__ import annotations

import pytest

from server.config import ConfigError, cors_origins


def test_empty_means_no_cors() -> None:
    assert cors_origins("") == ()
    assert cors_origins(" , ") == ()


def test_origins_are_split_trimmed_and_lose_a_trailing_slash() -> None:
    value = " https://app.example.com/ ,http://localhost:3000"

    assert cors_origins(value) == ("https://app.example.com", "http://localhost:3000")


@pytest.mark.parametrize("origin", ["app.example.com", "ftp://x.test", "https://x.test/app", "*"])
def test_anything_but_an_origin_is_refused_naming_the_variable(origin: str) -> None:
    with pytest.raises(ConfigError, match="EXPERIMENTS_CORS_ORIGINS"):
        cors_origins(origin)
