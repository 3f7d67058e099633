"""Who may do what: API keys, organization access, subscription, settings permission."""

from __future__ import annotations

import pytest

from server.domain import messages
from server.domain.access import Action, authorize, hash_api_key, new_api_key
from server.domain.errors import PermissionDenied
from server.domain.model import Organization, Principal
from tests.unit.builders import (
    ORGANIZATION,
    OTHER_ORGANIZATION,
    UNSUBSCRIBED_ORGANIZATION,
    USER,
)


def principal(
    organization: Organization = ORGANIZATION, can_manage_settings: bool = True
) -> Principal:
    return Principal(USER, organization, can_manage_settings)


def denial(who: Principal, organization: Organization, action: Action) -> str:
    with pytest.raises(PermissionDenied) as caught:
        authorize(who, str(organization.id), action)
    return caught.value.message


# --- API keys ------------------------------------------------------------------------------


def test_api_keys_are_fresh_and_stored_only_as_a_stable_hash() -> None:
    key, other_key = new_api_key(), new_api_key()

    assert key != other_key
    assert hash_api_key(key) == hash_api_key(key)
    assert hash_api_key(key) != hash_api_key(other_key)
    assert key not in hash_api_key(key)


def test_api_keys_never_start_with_a_dash_that_a_command_line_would_take_for_an_option() -> None:
    # About 1 in 64 random keys would; 2,000 draws miss that with odds of about 1e-14.
    assert not any(new_api_key().startswith("-") for _ in range(2_000))


# --- Authorization, in the documented order -------------------------------------------------


@pytest.mark.parametrize("action", [Action.READ, Action.WRITE])
def test_member_with_settings_permission_may_read_and_write(action: Action) -> None:
    authorize(principal(), str(ORGANIZATION.id), action)


def test_organization_id_is_matched_whatever_its_case() -> None:
    authorize(principal(), f" {str(ORGANIZATION.id).upper()} ", Action.WRITE)


@pytest.mark.parametrize("action", [Action.READ, Action.WRITE])
def test_user_of_another_organization_has_no_access(action: Action) -> None:
    assert denial(principal(), OTHER_ORGANIZATION, action) == messages.NO_ORGANIZATION_ACCESS


def test_no_access_is_reported_before_subscription_and_permission() -> None:
    lapsed_viewer = principal(UNSUBSCRIBED_ORGANIZATION, can_manage_settings=False)

    assert (
        denial(lapsed_viewer, OTHER_ORGANIZATION, Action.WRITE) == messages.NO_ORGANIZATION_ACCESS
    )


@pytest.mark.parametrize("action", [Action.READ, Action.WRITE])
def test_organization_without_active_subscription_is_denied(action: Action) -> None:
    who = principal(UNSUBSCRIBED_ORGANIZATION)

    assert denial(who, UNSUBSCRIBED_ORGANIZATION, action) == messages.NO_ACTIVE_SUBSCRIPTION


def test_missing_subscription_is_reported_before_missing_permission() -> None:
    lapsed_viewer = principal(UNSUBSCRIBED_ORGANIZATION, can_manage_settings=False)

    assert (
        denial(lapsed_viewer, UNSUBSCRIBED_ORGANIZATION, Action.WRITE)
        == messages.NO_ACTIVE_SUBSCRIPTION
    )


def test_user_without_settings_permission_may_read() -> None:
    authorize(principal(can_manage_settings=False), str(ORGANIZATION.id), Action.READ)


def test_user_without_settings_permission_may_not_write() -> None:
    viewer = principal(can_manage_settings=False)

    assert denial(viewer, ORGANIZATION, Action.WRITE) == messages.NO_SETTINGS_PERMISSION


def test_each_denial_tells_the_caller_what_to_fix() -> None:
    # What a client is told for each of the three reasons, as authorize() words them.
    said = {
        denial(principal(), OTHER_ORGANIZATION, Action.READ),
        denial(principal(UNSUBSCRIBED_ORGANIZATION), UNSUBSCRIBED_ORGANIZATION, Action.READ),
        denial(principal(can_manage_settings=False), ORGANIZATION, Action.WRITE),
    }

    assert len(said) == 3
