"""The gateway's own refusals (the rest_refusals filter of gateway/envoy.yaml) speak the server's
words: its 401 and 400 messages are server/domain/messages.py's, and it knows every request
field that holds a REST body, so that it names body attributes as the API does.

(Reads the checked-in Envoy template and the generated descriptor; no network, no processes.)
"""

from __future__ import annotations

import re

from experiments.v5 import experiments_pb2
from google.api import annotations_pb2

from gateway import launcher
from server.domain import messages

SERVICE = experiments_pb2.DESCRIPTOR.services_by_name["ExperimentService"]


def _lua() -> str:
    config = launcher.TEMPLATE.read_text()
    start = config.index("- name: rest_refusals")
    return config[start : config.index("- name:", start + 1)]


def test_the_gateways_messages_are_the_servers() -> None:
    lua = _lua()

    assert f'local UNAUTHENTICATED = "{messages.UNAUTHENTICATED}"' in lua
    assert f'local INVALID_REQUEST = "{messages.INVALID_REQUEST}"' in lua


def test_the_gateway_knows_every_request_field_that_holds_a_body() -> None:
    bodies = set()
    for method in SERVICE.methods:
        body = method.GetOptions().Extensions[annotations_pb2.http].body
        if body and body != "*":
            bodies.add(body)
    [listed] = re.findall(r"local BODY_FIELDS = {(.*)}", _lua())

    assert {name.split("=")[0].strip() for name in listed.split(",")} == bodies
