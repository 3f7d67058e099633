"""The entrypoint's reading of the `authorization: Token <key>` header into an API key."""

from __future__ import annotations

import pytest

from server.domain.access import new_api_key
from server.entrypoints.authentication import api_key_from_header


def test_token_header_gives_the_key() -> None:
    assert api_key_from_header("Token abc123") == "abc123"


@pytest.mark.parametrize("header", ["token abc123", "TOKEN abc123", "  Token   abc123  "])
def test_token_scheme_is_case_insensitive_and_spaces_around_are_ignored(header: str) -> None:
    assert api_key_from_header(header) == "abc123"


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "   ",
        "Token",
        "Token ",
        "Bearer abc123",
        "Basic YWxhZGRpbjpvcGVu",
        "Tokenabc123",
        "abc123",
        "Token abc 123",
    ],
)
def test_missing_or_malformed_token_header_gives_no_key(header: str | None) -> None:
    # The use cases answer UNAUTHENTICATED for no key, before any other check.
    assert api_key_from_header(header) is None


def test_a_fresh_api_key_survives_the_header() -> None:
    key = new_api_key()

    assert api_key_from_header(f"Token {key}") == key
