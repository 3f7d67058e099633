"""Request bodies of the end-to-end tests, starting from the documented example payload."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.e2e.stack import World

# The "Example payload" of "Create a new experiment", as the documentation gives it.
DOCUMENTED_EXAMPLE = """
{
    "goal_id": "0a534844-869a-11e9-8dcc-27f1dd2d9764",
    "groups": [
        {
            "name": "A",
            "percentage": 90,
            "group_type": "control",
            "treatment": {
                "name": "Rule-A",
                "actions": [],
                "conditions": []
            }
        },
        {
            "name": "B",
            "percentage": 10,
            "group_type": "user_defined",
            "treatment": {
                "name": "Rule-B",
                "actions": [],
                "conditions": []
            }
        },
    ],
    "group_reset_interval": "full",
    "name": "Hello experiment",
    "starts_at": "2019-05-08T13:02:35.123Z",
    "ends_at": "2019-05-22T13:02:35.123Z"
}
"""


def documented_example(world: World) -> dict[str, Any]:
    """The documented example as strict JSON for our organization: without its trailing comma
    (which the gateway accepts anyway), with the required is_draft it lacks, this world's goal
    and rooms."""
    payload: dict[str, Any] = json.loads(re.sub(r",(\s*[\]}])", r"\1", DOCUMENTED_EXAMPLE))
    payload["is_draft"] = False
    payload["room_ids"] = world.room_ids
    payload["goal_id"] = world.goal_id
    return payload


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def in_days(days: float) -> str:
    return rfc3339(datetime.now(UTC) + timedelta(days=days))


def upcoming(world: World, name: str = "Upcoming experiment") -> dict[str, Any]:
    """A published experiment that has not started: every attribute may still change."""
    payload = documented_example(world)
    payload.update(name=name, starts_at=in_days(30), ends_at=in_days(60))
    return payload


def running(world: World, name: str = "Running experiment") -> dict[str, Any]:
    """A published experiment that started in 2019 and never ends."""
    payload = documented_example(world)
    payload["name"] = name
    del payload["ends_at"]
    return payload
