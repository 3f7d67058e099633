"""The caller's API key, from the transport's `authorization: Token <key>` header.

Parsing the scheme is the entrypoint's work: the use cases receive the bare key, or None
when there is none, and answer UNAUTHENTICATED for it before anything else.
"""

from __future__ import annotations

# The gRPC metadata key (lower case) that carries it; REST's `Authorization` arrives as this.
AUTHORIZATION = "authorization"
_SCHEME = "token"


def api_key_from_header(value: str | None) -> str | None:
    """The key of an `authorization: Token <key>` header; None if the header is absent or not one.

    The scheme is matched whatever its case, and spaces around the scheme and the key are ignored.
    """
    if not value:
        return None
    scheme, _, key = value.strip().partition(" ")
    key = key.strip()
    if scheme.lower() != _SCHEME or not key or " " in key:
        return None
    return key
