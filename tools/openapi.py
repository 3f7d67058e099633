"""Writes openapi/experiments.v5.yaml, the OpenAPI 3.1 document of the REST API, from the contract.

The input is generated/experiments/v5/experiments.pb, the descriptor set (imports and comments
included) that `make generate` builds and Envoy's transcoder serves, so the document describes
what the gateway really does:

- paths and verbs from the `google.api.http` annotations, path parameters from the templates,
  query parameters from the other fields of the request message, the body from `body:`;
- descriptions from the proto comments, `required` and `readOnly` from `google.api.field_behavior`;
- JSON as Envoy prints and parses it (see gateway/envoy.yaml): proto field names, timestamps
  as RFC 3339 strings, a google.protobuf.Struct as any object, proto3 `optional` fields,
  timestamps and lists nullable in requests (null clears them), 64-bit integers as strings.
  The canonical forms only: Envoy also takes "42" for an integer or "true" for a boolean, which
  the document does not advertise;
- 201 for Create and 204 with no body for an RPC returning google.protobuf.Empty (the server sets
  them through the gateway), and errors as google.rpc.Status JSON with google.rpc.BadRequest;
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
from pathlib import Path
from typing import Any

import yaml
from google.api import annotations_pb2, field_behavior_pb2, http_pb2
from google.protobuf import descriptor_pb2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from server.domain.model import GroupType, ResetInterval  # noqa: E402
from server.domain.rules import MAX_GROUPS, NAME_MAX_LENGTH  # noqa: E402

DESCRIPTOR_SET = ROOT / "generated" / "experiments" / "v5" / "experiments.pb"
OUTPUT = ROOT / "openapi" / "experiments.v5.yaml"
SERVICE = "experiments.v5.ExperimentService"
Json = dict[str, Any]

# Rules a client can see, keyed by field; the domain enforces them (server/domain/rules.py).
FIELD_RULES: dict[str, Json] = {
    "experiments.v5.Experiment.name": {"maxLength": NAME_MAX_LENGTH},
    "experiments.v5.Experiment.group_reset_interval": {"enum": [i.value for i in ResetInterval]},
    "experiments.v5.Experiment.groups": {"maxItems": MAX_GROUPS},
    "experiments.v5.Group.name": {"maxLength": NAME_MAX_LENGTH},
    "experiments.v5.Group.percentage": {"minimum": 0, "maximum": 100},
    # A google.protobuf.Value holding one of the strings, or an explicit null.
    "experiments.v5.Group.group_type": {
        "type": ["string", "null"],
        "enum": [*(t.value for t in GroupType), None],
    },
    "experiments.v5.ListExperimentsRequest.page_size": {"minimum": 0},
}

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
ERRORS: dict[str, str] = {
    "400": "INVALID_ARGUMENT: the request breaks a rule (details: google.rpc.BadRequest naming"
    " every offending field), or the gateway could not parse it (malformed JSON or value, unknown"
    " query parameter). Nothing is written.",
    "401": "UNAUTHENTICATED: no `Authorization: Token <key>` header, or an unknown key.",
    "403": "PERMISSION_DENIED: no access to the organization, no active subscription, or (to"
    " write) no settings permission.",
    "404": "NOT_FOUND: no such experiment in that organization.",
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
        self.sent = self._sent_messages()

    def _sent_messages(self) -> set[str]:
        """The messages a client sends in a request body; the others only come back."""
        service, _, _ = self.contract.service(SERVICE)
        pending = []
        for method in service.method:
            body = method.options.Extensions[annotations_pb2.http].body
            request, _, _ = self.contract.messages[method.input_type]
            pending += [f.type_name for f in request.field if f.name == body and f.type_name]
        sent: set[str] = set()
        while pending:
            name = pending.pop()
            if name in sent or name not in self.contract.messages:
                continue
            sent.add(name)
            message, _, _ = self.contract.messages[name]
            pending += [f.type_name for f in message.field if f.type_name]
        return sent

    def ref(self, type_name: str) -> Json:
        name = _short(type_name)
        if name not in self.schemas:
            self.schemas[name] = {}  # placeholder: recursive messages stop here
            self.schemas[name] = self.message_schema(type_name)
        return {"$ref": f"#/components/schemas/{name}"}

    def message_schema(self, type_name: str) -> Json:
        message, file, path = self.contract.messages[type_name]
        properties: Json = {}
        required: list[str] = []
        for i, field in enumerate(message.field):
            # Envoy prints and parses the proto field names (preserve_proto_field_names); the
            # contract's json_names are the same, google.rpc's are not.
            key = field.name
            schema = self.field_schema(type_name, field)
            description = self.contract.comment(file, (*path, 2, i))
            behaviors = list(field.options.Extensions[field_behavior_pb2.field_behavior])
            output_only = field_behavior_pb2.FieldBehavior.OUTPUT_ONLY in behaviors
            if output_only:
                schema["readOnly"] = True
            if field_behavior_pb2.FieldBehavior.REQUIRED in behaviors:
                required.append(key)
            elif (
                (output_only or type_name not in self.sent)
                and "$ref" not in schema
                and not field.proto3_optional
            ):
                # Envoy prints every field without presence (always_print_primitive_fields), so
                # a response always has it; readOnly keeps it out of requests.
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

    def field_schema(self, message: str, field: descriptor_pb2.FieldDescriptorProto) -> Json:
        label = descriptor_pb2.FieldDescriptorProto
        rules = dict(FIELD_RULES.get(f"{message.lstrip('.')}.{field.name}", {}))
        repeated = field.label == label.LABEL_REPEATED
        if field.type == label.TYPE_MESSAGE and field.type_name in WELL_KNOWN:
            item = dict(WELL_KNOWN[field.type_name])
            nullable = field.type_name == ".google.protobuf.Timestamp" or "type" in item
        elif field.type == label.TYPE_MESSAGE:
            item, nullable = self.ref(field.type_name), False
        elif field.type == label.TYPE_ENUM:
            raise Unsupported(f"enums are not used by the contract yet: {field.name}")
        else:
            item, nullable = dict(SCALARS[field.type]), field.proto3_optional
        behaviors = list(field.options.Extensions[field_behavior_pb2.field_behavior])
        if field_behavior_pb2.FieldBehavior.REQUIRED in behaviors:
            nullable = False
        if repeated:
            # In a request body, null is an empty list, as for any field protobuf JSON parses.
            array: Json = {"type": ["array", "null"] if message in self.sent else "array"}
            for key in ("maxItems", "minItems"):
                if key in rules:
                    array[key] = rules.pop(key)
            array["items"] = {**item, **rules}
            return array
        schema = {**item, **rules}
        if nullable and isinstance(schema.get("type"), str):
            schema["type"] = [schema["type"], "null"]
            if "enum" in schema:
                schema["enum"] = [*schema["enum"], None]
        return schema

    def operations(self) -> Json:
        service, file, index = self.contract.service(SERVICE)
        paths: Json = {}
        for i, method in enumerate(service.method):
            rule = method.options.Extensions[annotations_pb2.http]
            verb, template = _binding(rule)
            paths.setdefault(template, {})[verb] = self.operation(
                method, rule, template, self.contract.comment(file, (6, index, 2, i))
            )
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
                parameters.append(
                    {
                        "name": field.name,
                        "in": "query",
                        "required": False,
                        "description": field_description,
                        "schema": schema,
                    }
                )
            else:
                raise Unsupported(f"{method.name}: body `{rule.body}` is not supported here")
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
        operation["responses"] = self.responses(method, "{experiment_id}" in template)
        return operation

    def responses(self, method: descriptor_pb2.MethodDescriptorProto, one: bool) -> Json:
        responses: Json = {}
        if method.output_type == ".google.protobuf.Empty":
            responses["204"] = {"description": "Done: no body."}
        else:
            status = "201" if method.name.startswith("Create") else "200"
            responses[status] = {
                "description": "Created." if status == "201" else "OK.",
                "content": {"application/json": {"schema": self.ref(method.output_type)}},
            }
        error = self.ref(".google.rpc.Status")
        for code, text in ERRORS.items():
            if code == "404" and not one:
                continue
            responses[code] = {
                "description": text,
                "content": {"application/json": {"schema": error}},
            }
        return responses

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
