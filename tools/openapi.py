"""Writes openapi/experiments.v5.yaml, the OpenAPI 3.1 document of the REST API, from the contract.

The input is generated/experiments/v5/experiments.pb, the descriptor set (imports and comments
included) that `make generate` builds and Envoy's transcoder serves, so the document describes
what the gateway really does:

- paths and verbs from the `google.api.http` annotations, path parameters from the templates,
  query parameters from the other fields of the request message, the body from `body:`;
- descriptions from the proto comments, `required` and `readOnly` from `google.api.field_behavior`;
- one schema for what a client sends and one for what comes back, for each message that goes
  both ways (`ExperimentInput` and `Experiment`): the request schema has no output-only fields
  (generators commonly ignore readOnly and would ask for them), the response schema marks
  `required` everything the gateway always prints; a string with a fixed set of values is a
  named enum schema, `oneOf` it and null where null is allowed (one type in a client);
- JSON as Envoy prints and parses it (see gateway/envoy.yaml): proto field names, timestamps
  as RFC 3339 strings, a google.protobuf.Struct as any object, proto3 `optional` fields,
  timestamps and lists nullable in requests (null clears them), 64-bit integers as strings.
  The canonical forms only: Envoy also takes "42" for an integer or "true" for a boolean, which
  the document does not advertise;
- each RPC's success status as server/entrypoints/rest_statuses.py gives it (the table the
  gateway applies: 201 for Create, 204 with no body for Delete), and errors as
  google.rpc.Status JSON with google.rpc.BadRequest, each HTTP status with the google.rpc.Code
  its body carries;
- the optional headers of conditional requests and idempotent creates (If-Match, If-None-Match,
  Idempotency-Key) and what they bring: ETag, Location, 304, 412; the gateway's own answers
  (413 for a body over 256 KiB, 415 for a gRPC content type, 431 for headers over the limit,
  503 while the server or database is down, WWW-Authenticate on a 401), and the 405 with Allow
  that any other method gets, in each path's description;
- the rules a client can check before sending (value sets, ranges, lengths, counts), taken from
  the domain constants in server/domain, so the document and the server cannot disagree.

It replaces protoc-gen-openapiv2 (grpc-gateway) and its predecessor protoc-gen-swagger, the usual
generators: the one Debian packages refuses proto3 `optional`, and neither knows the gateway's
201/204, error bodies, `Authorization: Token` scheme or Envoy's JSON for google.protobuf.Value,
so their output contradicts the live gateway.

    .venv/bin/python tools/openapi.py [--check]
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from google.api import annotations_pb2, field_behavior_pb2, http_pb2
from google.protobuf import descriptor_pb2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from server.domain import limits  # noqa: E402
from server.domain.concurrency import (  # noqa: E402
    IDEMPOTENCY_KEY_LIFETIME,
    IDEMPOTENCY_KEY_MAX_LENGTH,
)
from server.domain.model import GroupType, ResetInterval  # noqa: E402
from server.entrypoints import rest_statuses  # noqa: E402
from server.entrypoints.interceptors import RETRY_AFTER_SECONDS  # noqa: E402

DESCRIPTOR_SET = ROOT / "generated" / "experiments" / "v5" / "experiments.pb"
# RPCs taking a feed position (`after`): their 400 is INVALID_ARGUMENT for a malformed one, or
# OUT_OF_RANGE for one older than the history kept (README, "History, the change feed and
# watches").
FEED_POSITION_RPCS = {"ListExperimentChanges", "WatchExperimentChanges"}
OUTPUT = ROOT / "openapi" / "experiments.v5.yaml"
SERVICE = "experiments.v5.ExperimentService"
Json = dict[str, Any]

# Rules a client can see, keyed by field; the domain enforces them (server/domain/rules.py, with
# the numbers of server/domain/limits.py). A treatment's size and depth have no JSON Schema
# keyword: its description (the proto comment) states them.
FIELD_RULES: dict[str, Json] = {
    "experiments.v5.Experiment.name": {"maxLength": limits.NAME_MAX_LENGTH},
    "experiments.v5.Experiment.groups": {"maxItems": limits.MAX_GROUPS},
    "experiments.v5.Experiment.room_ids": {"maxItems": limits.MAX_ROOMS},
    "experiments.v5.Group.name": {"maxLength": limits.NAME_MAX_LENGTH},
    "experiments.v5.Group.percentage": {"minimum": 0, "maximum": 100},
    "experiments.v5.ListExperimentsRequest.page_size": {"minimum": 0},
    "experiments.v5.ListExperimentRevisionsRequest.page_size": {"minimum": 0},
    "experiments.v5.ListExperimentChangesRequest.page_size": {"minimum": 0},
    "experiments.v5.AssignVisitorRequest.visitor_id": {
        "minLength": 1,
        "maxLength": limits.VISITOR_ID_MAX_LENGTH,
    },
    "experiments.v5.AssignVisitorRequest.room_id": {"format": "uuid"},
}
# Fields whose schema is a named one, so that a generated client has one type for it: the strings
# with a fixed set of values, and the treatment (any object). Where null is allowed too, the
# reference is wrapped in `oneOf: [schema, null]`, which generators read as "that type or None"
# (an `enum` listing null inline came out of openapi-python-client as three types). group_type is
# a google.protobuf.Value, so that an explicit null is told apart from an omitted attribute: it
# can be null in responses too.
NAMED: dict[str, tuple[str, Json]] = {
    "experiments.v5.Experiment.group_reset_interval": (
        "GroupResetInterval",
        {"type": "string", "enum": [i.value for i in ResetInterval]},
    ),
    "experiments.v5.Group.group_type": (
        "GroupType",
        {"type": "string", "enum": [t.value for t in GroupType]},
    ),
    "experiments.v5.Group.treatment": (
        "Treatment",
        {"type": "object", "additionalProperties": True},
    ),
    "experiments.v5.Assignment.group_type": (
        "GroupType",
        {"type": "string", "enum": [t.value for t in GroupType]},
    ),
    "experiments.v5.Assignment.treatment": (
        "Treatment",
        {"type": "object", "additionalProperties": True},
    ),
}
# Fields with presence (messages, proto3 `optional`) that the server sets on every message it
# returns (server/entrypoints/translate.py): `required` in the response schemas, so that a
# generated client need not treat them as possibly missing. Fields without presence are printed
# always (always_print_primitive_fields) and need no entry; schemathesis checks every response
# against these claims.
ALWAYS_RETURNED: set[str] = {
    "experiments.v5.Experiment.created_at",
    "experiments.v5.Experiment.created_by_user",
    "experiments.v5.Experiment.updated_at",
    "experiments.v5.Experiment.updated_by_user",
    "experiments.v5.Experiment.organization",
    "experiments.v5.Experiment.group_reset_interval",
    "experiments.v5.Group.created_at",
    "experiments.v5.Group.updated_at",
    "experiments.v5.Group.group_type",
    "experiments.v5.Goal.organization",
    "experiments.v5.Assignment.group_type",
    "experiments.v5.ExperimentRevision.user",
    "experiments.v5.ExperimentRevision.created_at",
    "experiments.v5.ExperimentRevision.experiment",
}
# The suffix of a message's request schema when it comes back in responses too: what a client
# sends has no output-only fields and other required ones (ExperimentInput, GroupInput).
INPUT_SUFFIX = "Input"

SCALARS: dict[int, Json] = {
    descriptor_pb2.FieldDescriptorProto.TYPE_STRING: {"type": "string"},
    descriptor_pb2.FieldDescriptorProto.TYPE_BOOL: {"type": "boolean"},
    descriptor_pb2.FieldDescriptorProto.TYPE_INT32: {"type": "integer", "format": "int32"},
    descriptor_pb2.FieldDescriptorProto.TYPE_SINT32: {"type": "integer", "format": "int32"},
    descriptor_pb2.FieldDescriptorProto.TYPE_UINT32: {"type": "integer", "minimum": 0},
    descriptor_pb2.FieldDescriptorProto.TYPE_INT64: {"type": "string", "format": "int64"},
    descriptor_pb2.FieldDescriptorProto.TYPE_UINT64: {"type": "string", "format": "uint64"},
    descriptor_pb2.FieldDescriptorProto.TYPE_DOUBLE: {"type": "number"},
    descriptor_pb2.FieldDescriptorProto.TYPE_FLOAT: {"type": "number"},
    descriptor_pb2.FieldDescriptorProto.TYPE_BYTES: {"type": "string", "format": "byte"},
}
# An error detail: google.protobuf.Any in JSON, its type URL in "@type".
ANY_SCHEMA: Json = {
    "type": "object",
    "required": ["@type"],
    "properties": {"@type": {"type": "string"}},
    "additionalProperties": True,
}
WELL_KNOWN: dict[str, Json] = {
    ".google.protobuf.Any": ANY_SCHEMA,
    ".google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    ".google.protobuf.Struct": {"type": "object", "additionalProperties": True},
    ".google.protobuf.Value": {},
    ".google.protobuf.Duration": {"type": "string", "pattern": r"^-?\d+(\.\d+)?s$"},
}
TYPE_URL = "type.googleapis.com/"
EXPERIMENT = ".experiments.v5.Experiment"
# The gateway's limit on a REST request body, from its configuration (request_body_limit).
ENVOY_CONFIG = ROOT / "gateway" / "envoy.yaml"
BODY_LIMIT = int(re.findall(r"max_request_bytes: (\d+)", ENVOY_CONFIG.read_text())[0])

# Optional request headers, by RPC: the gateway passes them to the server as metadata (README,
# "Concurrent edits, retries and outages"). A client that sends none gets what the spec promises.
IF_MATCH: Json = {
    "name": "If-Match",
    "in": "header",
    "required": False,
    "description": 'Makes the write conditional on the etag read before: `"3"` (a bare `3`, a'
    ' comma list `"2", "3"`, or `*` for any version also work; a weak `W/"3"` never matches).'
    " If the experiment changed since, the answer is 412 and nothing is written: read it again,"
    " reapply the change, retry. An unreadable value is 400 naming `if-match`.",
    "schema": {"type": "string"},
}
HEADERS: dict[str, list[Json]] = {
    "GetExperiment": [
        {
            "name": "If-None-Match",
            "in": "header",
            "required": False,
            "description": 'The etag of a copy the client holds (`"3"`; weak comparison, `*`'
            " matches any): when it is still current the answer is 304 with no body. An"
            " unreadable value is ignored.",
            "schema": {"type": "string"},
        }
    ],
    "CreateExperiment": [
        {
            "name": "Idempotency-Key",
            "in": "header",
            "required": False,
            "description": "Any string the client chooses (a UUID is a good one). A retry with"
            " the same key and the same body returns the experiment created the first time"
            " (201 again, same `id`) and never creates a second one, also while the first call"
            " is still running. The same key with a different body is 400 naming"
            " `idempotency-key`. Keys belong to the calling user and organization and expire"
            f" {IDEMPOTENCY_KEY_LIFETIME // timedelta(hours=1)} hours after the Create.",
            "schema": {"type": "string", "minLength": 1, "maxLength": IDEMPOTENCY_KEY_MAX_LENGTH},
        }
    ],
    "UpdateExperiment": [IF_MATCH],
    "DeleteExperiment": [IF_MATCH],
}
# The headers that come with an error answer, by HTTP status.
ERROR_HEADERS: dict[str, Json] = {
    "401": {
        "WWW-Authenticate": {
            "description": "The scheme to authenticate with.",
            "required": True,
            "schema": {"type": "string", "const": "Token"},
        }
    },
    "429": {
        "Retry-After": {
            "description": f"Seconds to wait before retrying (today always {RETRY_AFTER_SECONDS}).",
            "required": True,
            "schema": {"type": "string", "pattern": "^[0-9]+$"},
        }
    },
}
ETAG_HEADER: Json = {
    "description": 'The experiment\'s `etag`, quoted as HTTP wants: `"3"`.',
    "required": True,
    "schema": {"type": "string", "pattern": '^"[^"]+"$'},
}


@dataclass(frozen=True)
class Error:
    """An error answer: the google.rpc.Code its google.rpc.Status body carries, when fixed."""

    name: str
    code: int | None
    description: str


# The error answers by HTTP status (components/responses). Envoy's own refusals have the same
# body shape as the server's (gateway/envoy.yaml, local_reply_config) and the same code.
ERRORS: dict[str, Error] = {
    "400": Error(
        "InvalidArgument",
        3,
        "INVALID_ARGUMENT: the request breaks a rule, has a value of the wrong type or an"
        " unknown query parameter, or a query parameter that names a field the path sets"
        " (details: google.rpc.BadRequest naming every offending field the server found, or the"
        " one the gateway could not parse), or its body is not JSON (no details). Nothing is"
        " written.",
    ),
    "401": Error(
        "Unauthenticated",
        16,
        "UNAUTHENTICATED: no `Authorization: Token <key>` header, or an unknown key.",
    ),
    "403": Error(
        "PermissionDenied",
        7,
        "PERMISSION_DENIED: no access to the organization, no active subscription, or (to"
        " write) no settings permission.",
    ),
    "404": Error("NotFound", 5, "NOT_FOUND: no such experiment in that organization."),
    "412": Error(
        "PreconditionFailed",
        10,
        "ABORTED: `If-Match` does not name the experiment's current etag (it changed since it"
        " was read). Nothing is written; read it again and retry.",
    ),
    "413": Error(
        "PayloadTooLarge",
        3,
        f"The request body is larger than {BODY_LIMIT} bytes ({BODY_LIMIT // 1024} KiB), "
        "the gateway's limit."
        " Nothing is written.",
    ),
    "415": Error(
        "UnsupportedMediaType",
        3,
        "A gRPC content type (`application/grpc`, `application/grpc-web`, ...) on a REST path:"
        " gRPC clients call /experiments.v5.ExperimentService/<method> on the same port. Nothing"
        " is written.",
    ),
    "429": Error(
        "Busy",
        8,
        "RESOURCE_EXHAUSTED: the server that got the call already holds as many calls as it"
        " allows (EXPERIMENTS_MAX_CALLS reads and as many writes per worker process;"
        " EXPERIMENTS_MAX_STREAMS streams); the call was not started and nothing is written."
        " Retry after `Retry-After` seconds, perhaps on another server.",
    ),
    "431": Error(
        "HeadersTooLarge",
        3,
        f"The request headers are larger than {limits.MAX_HEADER_BYTES} bytes (names and values;"
        " neither pseudo-headers nor the x-forwarded-*, x-envoy-* and x-request-id headers of"
        " proxies count). Nothing is written.",
    ),
    "503": Error(
        "Unavailable",
        14,
        "UNAVAILABLE: the database or the server is unreachable or restarting. Retry later,"
        " with backoff.",
    ),
    "5XX": Error(
        "ServerError",
        None,
        "Another server-side failure: 500 INTERNAL (a bug; a generic message), 502 (the"
        " gateway lost the connection to the server, code 14) or 504 (the server did not answer"
        " in time, code 4).",
    ),
}


class Unsupported(ValueError):
    """The contract uses something this generator does not map yet; the message names it."""


@dataclass
class Contract:
    """The descriptor set, indexed: messages by full name, comments by file and path."""

    files: list[descriptor_pb2.FileDescriptorProto]
    messages: dict[str, tuple[descriptor_pb2.DescriptorProto, str, tuple[int, ...]]]
    comments: dict[tuple[str, tuple[int, ...]], str]

    @classmethod
    def load(cls, path: Path) -> Contract:
        descriptor_set = descriptor_pb2.FileDescriptorSet.FromString(path.read_bytes())
        messages: dict[str, tuple[descriptor_pb2.DescriptorProto, str, tuple[int, ...]]] = {}
        comments: dict[tuple[str, tuple[int, ...]], str] = {}
        for file in descriptor_set.file:
            for location in file.source_code_info.location:
                if location.leading_comments:
                    comments[(file.name, tuple(location.path))] = _clean(location.leading_comments)

            def index(
                message: descriptor_pb2.DescriptorProto,
                prefix: str,
                path: tuple[int, ...],
                file: descriptor_pb2.FileDescriptorProto = file,
            ) -> None:
                full = f"{prefix}.{message.name}"
                messages[full] = (message, file.name, path)
                for i, nested in enumerate(message.nested_type):
                    index(nested, full, (*path, 3, i))

            for i, message in enumerate(file.message_type):
                index(message, f".{file.package}", (4, i))
        return cls(list(descriptor_set.file), messages, comments)

    def comment(self, file: str, path: tuple[int, ...]) -> str:
        return self.comments.get((file, path), "")

    def service(self, full_name: str) -> tuple[descriptor_pb2.ServiceDescriptorProto, str, int]:
        for file in self.files:
            for i, service in enumerate(file.service):
                if f"{file.package}.{service.name}" == full_name:
                    return service, file.name, i
        raise Unsupported(f"service {full_name} is not in {DESCRIPTOR_SET}")


def _clean(comment: str) -> str:
    lines = [line[1:] if line.startswith(" ") else line for line in comment.splitlines()]
    return "\n".join(lines).strip()


def _short(full_name: str) -> str:
    """The component name of a message: `Experiment`, `google.rpc.Status`."""
    name = full_name.lstrip(".")
    return name.removeprefix("experiments.v5.")


class Builder:
    def __init__(self, contract: Contract) -> None:
        self.contract = contract
        self.schemas: dict[str, Json] = {}
        service, _, _ = contract.service(SERVICE)
        bodies: list[str] = []
        for method in service.method:
            body = method.options.Extensions[annotations_pb2.http].body
            request, _, _ = contract.messages[method.input_type]
            bodies += [f.type_name for f in request.field if f.name == body and f.type_name]
        # The messages a client sends in a request body, and those that come back.
        self.sent = self._reachable(bodies)
        self.returned = self._reachable([method.output_type for method in service.method])

    def _reachable(self, roots: list[str]) -> set[str]:
        """The messages of `roots` and every message their fields hold, however deep."""
        found: set[str] = set()
        pending = list(roots)
        while pending:
            name = pending.pop()
            if name in found or name not in self.contract.messages:
                continue
            found.add(name)
            message, _, _ = self.contract.messages[name]
            pending += [f.type_name for f in message.field if f.type_name]
        return found

    def ref(self, type_name: str, request: bool = False) -> Json:
        """A reference to the schema of a message as sent (`request`) or as returned."""
        name = _short(type_name)
        if request and type_name in self.returned:
            name += INPUT_SUFFIX
        if name not in self.schemas:
            self.schemas[name] = {}  # placeholder: recursive messages stop here
            self.schemas[name] = self.message_schema(type_name, request)
        return {"$ref": f"#/components/schemas/{name}"}

    def message_schema(self, type_name: str, request: bool) -> Json:
        message, file, path = self.contract.messages[type_name]
        properties: Json = {}
        required: list[str] = []
        for i, field in enumerate(message.field):
            behaviors = list(field.options.Extensions[field_behavior_pb2.field_behavior])
            output_only = field_behavior_pb2.FieldBehavior.OUTPUT_ONLY in behaviors
            if request and output_only:
                continue  # the server ignores it; a client has nothing to put there
            # Envoy prints and parses the proto field names (preserve_proto_field_names); the
            # contract's json_names are the same, google.rpc's are not.
            key = field.name
            schema = self.field_schema(type_name, field, request)
            description = self.contract.comment(file, (*path, 2, i))
            if output_only:
                schema["readOnly"] = True
            if field_behavior_pb2.FieldBehavior.REQUIRED in behaviors:
                required.append(key)
            elif not request and (
                f"{type_name.lstrip('.')}.{field.name}" in ALWAYS_RETURNED
                or (field.type != field.TYPE_MESSAGE and not field.proto3_optional)
                or field.label == field.LABEL_REPEATED
            ):
                # Envoy prints every field without presence (always_print_primitive_fields),
                # so a response always has it.
                required.append(key)
            if description:
                schema = self._describe(schema, description)
            properties[key] = schema
        result: Json = {"type": "object"}
        description = self.contract.comment(file, path)
        if description:
            result["description"] = description
        if required:
            result["required"] = required
        result["properties"] = properties
        return result

    @staticmethod
    def _describe(schema: Json, description: str) -> Json:
        if "$ref" in schema:
            # A $ref with siblings is allowed in 3.1, but keep the reference alone for tools.
            return {"allOf": [schema], "description": description}
        return {**schema, "description": description}

    def named(self, name: str, schema: Json) -> Json:
        self.schemas[name] = schema
        return {"$ref": f"#/components/schemas/{name}"}

    def field_schema(
        self, message: str, field: descriptor_pb2.FieldDescriptorProto, request: bool = True
    ) -> Json:
        """The JSON Schema of a field in a request (where null clears a field with presence,
        and means an empty list) or in a response (where an unset field is left out)."""
        label = descriptor_pb2.FieldDescriptorProto
        full_name = f"{message.lstrip('.')}.{field.name}"
        rules = dict(FIELD_RULES.get(full_name, {}))
        repeated = field.label == label.LABEL_REPEATED
        behaviors = list(field.options.Extensions[field_behavior_pb2.field_behavior])
        required = field_behavior_pb2.FieldBehavior.REQUIRED in behaviors
        if full_name in NAMED:
            item = self.named(*NAMED[full_name])
            # A google.protobuf.Value holds an explicit null in responses as well.
            nullable = field.type_name == ".google.protobuf.Value" or (
                request and (field.proto3_optional or field.type_name in WELL_KNOWN)
            )
        elif field.type == label.TYPE_MESSAGE and field.type_name in WELL_KNOWN:
            item = dict(WELL_KNOWN[field.type_name])
            nullable = request and "type" in item
        elif field.type == label.TYPE_MESSAGE:
            item, nullable = self.ref(field.type_name, request), False
        elif field.type == label.TYPE_ENUM:
            raise Unsupported(f"enums are not used by the contract yet: {field.name}")
        else:
            item, nullable = dict(SCALARS[field.type]), request and field.proto3_optional
        if required:
            nullable = False
        if repeated:
            # In a request body, null is an empty list, as for any field protobuf JSON parses.
            array: Json = {"type": ["array", "null"] if request else "array"}
            for key in ("maxItems", "minItems"):
                if key in rules:
                    array[key] = rules.pop(key)
            array["items"] = {**item, **rules}
            return array
        if "$ref" in item:
            return {"oneOf": [item, {"type": "null"}]} if nullable else item
        schema = {**item, **rules}
        if nullable:
            schema["type"] = [schema["type"], "null"]
        return schema

    def operations(self) -> Json:
        service, file, index = self.contract.service(SERVICE)
        unknown = set(HEADERS) - {method.name for method in service.method}
        if unknown:
            raise SystemExit(f"HEADERS names RPCs the service does not have: {sorted(unknown)}")
        paths: Json = {}
        for i, method in enumerate(service.method):
            rule = method.options.Extensions[annotations_pb2.http]
            verb, template = _binding(rule)
            paths.setdefault(template, {})[verb] = self.operation(
                method, rule, template, self.contract.comment(file, (6, index, 2, i))
            )
        for template, operations in paths.items():
            # The gateway's method_not_allowed routes (gateway/envoy.yaml) answer any other
            # method; OpenAPI has no place for undeclared methods but the path's description.
            allowed = ", ".join(verb.upper() for verb in operations)
            paths[template] = {
                "description": f"Any other method is answered 405 Method Not Allowed with"
                f" `Allow: {allowed}` and a google.rpc.Status body (code 12, UNIMPLEMENTED).",
                **operations,
            }
        return paths

    def operation(
        self,
        method: descriptor_pb2.MethodDescriptorProto,
        rule: http_pb2.HttpRule,
        template: str,
        description: str,
    ) -> Json:
        request, request_file, request_path = self.contract.messages[method.input_type]
        in_path = re.findall(r"{([^}=]+)", template)
        parameters: list[Json] = []
        body: Json | None = None
        for i, field in enumerate(request.field):
            field_description = self.contract.comment(request_file, (*request_path, 2, i))
            schema = self.field_schema(method.input_type, field)
            if field.name in in_path:
                parameters.append(
                    {
                        "name": field.name,
                        "in": "path",
                        "required": True,
                        "description": field_description,
                        "schema": schema,
                    }
                )
            elif rule.body == field.name:
                body = {
                    "required": True,
                    "description": field_description,
                    "content": {"application/json": {"schema": schema}},
                }
            elif not rule.body:
                behaviors = field.options.Extensions[field_behavior_pb2.field_behavior]
                if isinstance(schema.get("type"), list):
                    # A query parameter is sent or not: it has no null.
                    schema["type"] = next(t for t in schema["type"] if t != "null")
                parameters.append(
                    {
                        "name": field.name,
                        "in": "query",
                        "required": field_behavior_pb2.FieldBehavior.REQUIRED in behaviors,
                        "description": field_description,
                        "schema": schema,
                    }
                )
            else:
                raise Unsupported(f"{method.name}: body `{rule.body}` is not supported here")
        headers = HEADERS.get(method.name, [])
        parameters += headers
        summary, _, _ = description.partition("\n\n")
        operation: Json = {
            "operationId": method.name,
            "tags": [SERVICE.rsplit(".", 1)[1]],
            "summary": " ".join(summary.split()),
            "description": description,
        }
        if parameters:
            operation["parameters"] = parameters
        if body is not None:
            operation["requestBody"] = body
        sent = {header["name"] for header in headers}
        operation["responses"] = self.responses(
            method, "{experiment_id}" in template, sent, body is not None
        )
        return operation

    def responses(
        self,
        method: descriptor_pb2.MethodDescriptorProto,
        one: bool,
        headers: set[str],
        has_body: bool,
    ) -> Json:
        responses: Json = {}
        if method.client_streaming:
            raise Unsupported(f"{method.name} streams requests; REST has no form for that")
        status = str(rest_statuses.success(method.name))
        if method.server_streaming:
            responses[status] = self.stream(method)
        elif int(status) in rest_statuses.WITHOUT_BODY:
            responses[status] = {"description": "Done: no body."}
        else:
            success: Json = {"description": "Created." if status == "201" else "OK."}
            if method.output_type == EXPERIMENT:
                success["headers"] = {"ETag": ETAG_HEADER}
            if status == "201":
                success["headers"]["Location"] = {
                    "description": "The URL of the new experiment (from"
                    " EXPERIMENTS_PUBLIC_BASE_URL).",
                    "required": True,
                    "schema": {"type": "string", "format": "uri"},
                }
                success["links"] = self.links()
            success["content"] = {"application/json": {"schema": self.ref(method.output_type)}}
            responses[status] = success
        if "If-None-Match" in headers:
            responses["304"] = {
                "description": "Not Modified: `If-None-Match` names the current etag. No body.",
                "headers": {"ETag": ETAG_HEADER},
            }
        wanted = {
            "404": one,
            "412": "If-Match" in headers,
            "413": has_body,
        }
        for status, error in ERRORS.items():
            if wanted.get(status, True):
                responses[status] = {"$ref": f"#/components/responses/{error.name}"}
        if method.name in FEED_POSITION_RPCS:
            responses["400"] = self.feed_position_error()
        return dict(sorted(responses.items()))

    def stream(self, method: descriptor_pb2.MethodDescriptorProto) -> Json:
        """A server stream over REST: the transcoder's stream_newline_delimited (gateway/envoy.yaml)
        writes one JSON message per line as each arrives, chunked over HTTP/1.1; rest_empty_body
        labels a 200 application/x-ndjson (an error before the first line stays application/json).
        OpenAPI 3.1 has no keyword for a stream of items, so the schema is that of one line, and
        the description says so."""
        message, _, _ = self.contract.messages[method.output_type]
        members = [
            field.name
            for field in message.field
            if field.HasField("oneof_index") and not field.proto3_optional
        ]
        line: Json = {"allOf": [self.ref(method.output_type)]}
        if members:
            # Each message sets exactly one member of its oneof.
            line["oneOf"] = [{"required": [name]} for name in members]
        return {
            "description": "OK: a stream that stays open, newline-delimited JSON"
            " (`application/x-ndjson`):"
            f" one {_short(method.output_type)} object per line, each written as it happens, the"
            " schema below being that of one line. The body never ends by itself: any end"
            " (the connection dropped, the server stopped, an error after the first line, which"
            " HTTP/1.1 has no trailer to report) means reconnect with `after` set to the last"
            " `cursor` received; an error that persists is then answered as an ordinary error"
            " response. Read it with a streaming reader (`fetch` and `response.body` in a"
            " browser; `EventSource` cannot send the `Authorization` header), splitting on"
            " `\\n`.",
            "content": {"application/x-ndjson": {"schema": line}},
        }

    def feed_position_error(self) -> Json:
        status = self.ref(".google.rpc.Status")
        return {
            "description": f"{ERRORS['400'].description} Or OUT_OF_RANGE (code 11): `after` is"
            " older than the history kept (`experiments-admin prune-history`); list the"
            " experiments again, then continue from a new position.",
            "content": {
                "application/json": {
                    "schema": {
                        "allOf": [status],
                        "properties": {"code": {"enum": [ERRORS["400"].code, 11]}},
                    }
                }
            },
        }

    def links(self) -> Json:
        """What a client does next with a created experiment: the stateful phase of schemathesis
        follows these too, sending the etag it got back as If-Match."""
        same = {
            "organization_id": "$request.path.organization_id",
            "experiment_id": "$response.body#/id",
        }
        conditional = {**same, "header.If-Match": "$response.header.ETag"}
        return {
            "GetCreated": {"operationId": "GetExperiment", "parameters": same},
            "UpdateCreated": {"operationId": "UpdateExperiment", "parameters": conditional},
            "DeleteCreated": {"operationId": "DeleteExperiment", "parameters": conditional},
        }

    def error_responses(self) -> Json:
        status = self.ref(".google.rpc.Status")
        result: Json = {}
        for code, error in ERRORS.items():
            schema = status
            if error.code is not None:
                schema = {"allOf": [status], "properties": {"code": {"const": error.code}}}
            answer: Json = {"description": error.description}
            if code in ERROR_HEADERS:
                answer["headers"] = ERROR_HEADERS[code]
            answer["content"] = {"application/json": {"schema": schema}}
            result[error.name] = answer
        return result

    def error_schemas(self) -> None:
        self.ref(".google.rpc.Status")
        bad_request = self.ref(".google.rpc.BadRequest")
        schema = self.schemas["google.rpc.Status"]
        # Details are google.protobuf.Any: the message's fields beside its "@type".
        bad_request_any = {
            "allOf": [bad_request],
            "type": "object",
            "required": ["@type"],
            "properties": {"@type": {"const": TYPE_URL + "google.rpc.BadRequest"}},
        }
        schema["properties"]["details"]["items"] = {"anyOf": [bad_request_any, ANY_SCHEMA]}


def _binding(rule: http_pb2.HttpRule) -> tuple[str, str]:
    for verb in ("get", "put", "post", "delete", "patch"):
        template = getattr(rule, verb)
        if template:
            return verb, template
    raise Unsupported(f"unsupported google.api.http rule: {rule}")


def build(contract: Contract) -> Json:
    builder = Builder(contract)
    service, file, index = contract.service(SERVICE)
    paths = builder.operations()
    builder.error_schemas()
    responses = builder.error_responses()
    description = contract.comment(file, (6, index))
    package_comment = contract.comment(file, (2,))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Experiments API",
            "version": "v5",
            "description": "\n\n".join(filter(None, [package_comment, description]))
            + "\n\nGenerated by tools/openapi.py from protos/experiments/v5/experiments.proto;"
            " do not edit.",
        },
        "servers": [{"url": "http://127.0.0.1:8080", "description": "`make run`"}],
        "security": [{"ApiKey": []}],
        "tags": [{"name": service.name, "description": description.partition("\n\n")[0]}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "ApiKey": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "`Token <key>`: the word Token, a space, then the API key.",
                }
            },
            "schemas": dict(sorted(builder.schemas.items())),
            "responses": responses,
        },
    }


class _Dumper(yaml.SafeDumper):
    """Plain YAML: no anchors for shared schemas, comments as literal blocks."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _string(dumper: yaml.SafeDumper, text: str) -> yaml.Node:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _string)


def render(document: Json) -> str:
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed file is stale")
    args = parser.parse_args()
    try:
        text = render(build(Contract.load(DESCRIPTOR_SET)))
    except Unsupported as error:
        raise SystemExit(f"tools/openapi.py: {error}") from None
    relative = OUTPUT.relative_to(ROOT)
    if args.check:
        if not OUTPUT.exists() or OUTPUT.read_text() != text:
            raise SystemExit(f"{relative} is stale; run `make generate` and commit it")
        print(f"{relative} is current")
        return
    OUTPUT.parent.mkdir(exist_ok=True)
    OUTPUT.write_text(text)
    print(f"{relative} written")


if __name__ == "__main__":
    main()
