"""Who may do what: organization access, subscription and the settings permission."""

from __future__ import annotations

import hashlib
import secrets
from enum import Enum, auto

from server.domain import messages
from server.domain.errors import PermissionDenied
from server.domain.model import Principal

_KEY_BYTES = 32


class Action(Enum):
    READ = auto()
    WRITE = auto()


def new_api_key() -> str:
    """A fresh secret key; shown to its owner once, stored only as hash_api_key(key).

    Never starting with "-", which command lines (`revoke-api-key --key KEY`) would read as an
    option: about 1 key in 64 would otherwise.
    """
    while True:
        key = secrets.token_urlsafe(_KEY_BYTES)
        if not key.startswith("-"):
            return key


def hash_api_key(key: str) -> str:
    # Keys are random 256-bit secrets, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(key.encode()).hexdigest()


def authorize(principal: Principal, organization_id: str, action: Action) -> None:
    """Raises PermissionDenied unless the principal may perform action in the organization.

    Checked in the documented order: access, then subscription, then the settings permission.
    """
    if str(principal.organization.id) != organization_id.strip().lower():
        raise PermissionDenied(messages.NO_ORGANIZATION_ACCESS)
    if not principal.organization.has_active_subscription:
        raise PermissionDenied(messages.NO_ACTIVE_SUBSCRIPTION)
    if action is Action.WRITE and not principal.can_manage_settings:
        raise PermissionDenied(messages.NO_SETTINGS_PERMISSION)
