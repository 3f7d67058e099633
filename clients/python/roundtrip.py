"""A round trip through the REST API with a client openapi-python-client generated from
openapi/experiments.v5.yaml, used as generated (no edits, no placeholder values):
create (201, Location, ETag), get, list following `next`, update with If-Match (and a stale one:
412), delete, and a refused create read as google.rpc.BadRequest.

tests/e2e/test_generated_clients.py generates the package `experiments_client` into a temporary
folder, puts it on PYTHONPATH and runs this against the real Envoy and server. The environment
names the service and the demo world: EXPERIMENTS_REST_URL, EXPERIMENTS_KEY (tokens.settings),
EXPERIMENTS_ORG (organization_id), EXPERIMENTS_GOAL (goal_id), EXPERIMENTS_ROOMS (room_ids, comma
separated).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

from experiments_client import AuthenticatedClient
from experiments_client.api.experiment_service import (
    create_experiment,
    delete_experiment,
    get_experiment,
    list_experiments,
    update_experiment,
)
from experiments_client.models import (
    Experiment,
    ExperimentInput,
    GoogleRpcBadRequest,
    GoogleRpcStatus,
    GroupInput,
    GroupType,
    ListExperimentsResponse,
    Treatment,
)

ORG = os.environ["EXPERIMENTS_ORG"]
GOAL = os.environ["EXPERIMENTS_GOAL"]
ROOMS = os.environ["EXPERIMENTS_ROOMS"].split(",")


def new_experiment(name: str, percentages: tuple[int, int] = (90, 10)) -> ExperimentInput:
    """What a client writes: only the attributes it chooses."""
    return ExperimentInput(
        is_draft=False,
        name=name,
        goal_id=GOAL,
        room_ids=ROOMS[:1],
        starts_at=datetime(2030, 5, 8, 13, 2, 35, 123000, tzinfo=UTC),
        groups=[
            GroupInput(
                name="A",
                percentage=percentages[0],
                group_type=GroupType.CONTROL,
                treatment=Treatment.from_dict({"name": "Rule-A", "actions": [], "priority": 3}),
            ),
            GroupInput(name="B", percentage=percentages[1], group_type=None),
        ],
    )


def created(client: AuthenticatedClient, name: str) -> tuple[Experiment, str]:
    response = create_experiment.sync_detailed(ORG, client=client, body=new_experiment(name))
    assert response.status_code == 201, response.content
    experiment = response.parsed
    assert isinstance(experiment, Experiment), response.content
    location = response.headers["location"]
    assert location.endswith(f"/api/v5/orgs/{ORG}/experiments/{experiment.id}"), location
    etag = response.headers["etag"]
    assert etag == f'"{experiment.etag}"', (etag, experiment.etag)
    return experiment, etag


def all_pages(client: AuthenticatedClient) -> list[str]:
    """Every experiment id of the organization, two per page, following `next` as it is."""
    response = list_experiments.sync_detailed(ORG, client=client, page_size=2)
    page = response.parsed
    assert isinstance(page, ListExperimentsResponse), response.content
    ids = [experiment.id for experiment in page.results]
    while page.next_:
        followed = client.get_httpx_client().get(page.next_)
        assert followed.status_code == 200, followed.text
        page = ListExperimentsResponse.from_dict(followed.json())
        ids += [experiment.id for experiment in page.results]
    return ids


def main() -> None:
    client = AuthenticatedClient(
        base_url=os.environ["EXPERIMENTS_REST_URL"],
        token=os.environ["EXPERIMENTS_KEY"],
        prefix="Token",
    )

    experiment, etag = created(client, "Hello experiment")
    assert experiment.groups[0].group_type == GroupType.CONTROL
    assert experiment.groups[1].group_type is None
    assert isinstance(experiment.groups[0].treatment, Treatment)
    assert experiment.groups[0].treatment["priority"] == 3
    assert experiment.starts_at == datetime(2030, 5, 8, 13, 2, 35, 123000, tzinfo=UTC)
    print("create: 201 with Location and ETag")

    got = get_experiment.sync_detailed(ORG, experiment.id, client=client)
    assert got.status_code == 200 and isinstance(got.parsed, Experiment), got.content
    assert got.parsed.to_dict() == experiment.to_dict()
    assert got.headers["etag"] == etag
    print("get: 200, the same experiment")

    others = [created(client, f"Listed {i}")[0].id for i in range(3)]
    listed = all_pages(client)
    assert listed[:4] == [*reversed(others), experiment.id], listed
    print(f"list: {len(listed)} experiments over pages of 2, following next")

    # GET, change one attribute, PUT the whole object back (output-only attributes included).
    change = ExperimentInput.from_dict(got.parsed.to_dict())
    change.name = "Renamed experiment"
    stale = update_experiment.sync_detailed(
        ORG, experiment.id, client=client, body=change, if_match='"not-the-etag"'
    )
    assert stale.status_code == 412 and isinstance(stale.parsed, GoogleRpcStatus), stale.content
    assert stale.parsed.code == 10
    updated = update_experiment.sync_detailed(
        ORG, experiment.id, client=client, body=change, if_match=etag
    )
    assert updated.status_code == 200 and isinstance(updated.parsed, Experiment), updated.content
    assert updated.parsed.name == "Renamed experiment"
    assert updated.headers["etag"] not in ("", etag)
    print("update: 200 with If-Match, 412 with a stale one")

    refused = create_experiment.sync_detailed(
        ORG, client=client, body=new_experiment("Too much", percentages=(90, 20))
    )
    assert refused.status_code == 400, refused.content
    status = refused.parsed
    assert isinstance(status, GoogleRpcStatus) and status.code == 3, refused.content
    [details] = status.details
    assert isinstance(details, GoogleRpcBadRequest), details
    fields = {violation.field for violation in details.field_violations or []}
    assert "groups" in fields, fields
    print(f"invalid create: 400, BadRequest naming {sorted(fields)}")

    deleted = delete_experiment.sync_detailed(
        ORG, experiment.id, client=client, if_match=updated.headers["etag"]
    )
    assert deleted.status_code == 204 and deleted.content == b"", deleted.content
    gone = get_experiment.sync_detailed(ORG, experiment.id, client=client)
    assert gone.status_code == 404 and isinstance(gone.parsed, GoogleRpcStatus), gone.content
    print("delete: 204, then get: 404")


if __name__ == "__main__":
    main()
