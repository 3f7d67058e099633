"""Every size, count and depth limit of the API, in one place, each with the reason for it.

README.md ("Limits") and the proto comments document these numbers; tests check each at its
edge. They are chosen so that any page the API can produce fits through a default gRPC client
(4 MiB per message) and through the gateway's response buffer (see gateway/envoy.yaml).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

KIB: Final = 1024
MIB: Final = 1024 * KIB

# Names are one line of text for people; the column is VARCHAR(255) on PostgreSQL.
NAME_MAX_LENGTH: Final = 255
# An A/B test splits visitors into a handful of groups; 100 leaves room without letting one
# experiment grow without bound.
MAX_GROUPS: Final = 100
# A visitor id is whatever id the calling service has for a visitor (a cookie, an account id);
# it is hashed, never stored. 255 characters covers the usual ones, UUIDs and URLs included.
VISITOR_ID_MAX_LENGTH: Final = 255
# Rooms are listed by ID; each costs a lookup and a row, and a response shows every room.
MAX_ROOMS: Final = 100
# A treatment is a rule (name, actions, conditions): kilobytes, not megabytes. Measured as
# compact JSON in UTF-8 (what PostgreSQL and SQLite store).
MAX_TREATMENT_BYTES: Final = 16 * KIB
# Objects and arrays nested inside a treatment, the treatment itself being level 1. Deeper JSON
# is refused before it reaches a JSON column or a recursive encoder.
MAX_TREATMENT_DEPTH: Final = 16
# Everything a client writes into one experiment (names, IDs, treatments) as compact JSON: bounds
# every response that shows the experiment, so a page of them stays within PAGE_BUDGET_BYTES.
MAX_EXPERIMENT_BYTES: Final = 128 * KIB
# A gRPC request larger than this is refused in our words, before it is parsed: what a valid
# request needs (an experiment of at most MAX_EXPERIMENT_BYTES, as protobuf) with room to spare,
# so that an abusive one costs little to refuse (a 4 MiB request of 200,000 treatment keys took
# 2.2 s of CPU to parse, convert and check). Protobuf spends at most 2.75 times the bytes the
# size limits count (a number in an array: 11 bytes for "0.0,"), so only a valid experiment made
# mostly of such arrays (more than ~93 KiB of them) is larger than this.
MAX_REQUEST_BYTES: Final = 256 * KIB
# A REST body larger than this is refused by the gateway (gateway/envoy.yaml, request_body_limit)
# with 413 before it is transcoded: a valid experiment is at most MAX_EXPERIMENT_BYTES of JSON.
MAX_REQUEST_BODY_BYTES: Final = 256 * KIB
# What grpcio itself receives (grpc.max_receive_message_length): the protobuf form of any REST
# body within MAX_REQUEST_BODY_BYTES (at most 5.5 times larger, for numbers in arrays), so that
# the gateway's requests are refused in our words (INVALID_ARGUMENT, REST 400) above
# MAX_REQUEST_BYTES, never by grpcio (RESOURCE_EXHAUSTED, which REST shows as 429, "retry").
MAX_RECEIVED_BYTES: Final = 6 * MAX_REQUEST_BODY_BYTES
# A treatment whose protobuf form is larger than this cannot be MAX_TREATMENT_BYTES of JSON or
# less as the rules measure it (numbers print as 0.0; protobuf takes at most 2.75 times those
# bytes, for numbers in arrays), so it is refused as too large before it is converted to Python
# values, which costs far more than protobuf's C parser.
MAX_TREATMENT_WIRE_BYTES: Final = 3 * MAX_TREATMENT_BYTES
# A list page stops early (its next cursor continues) before its experiments take more than this
# many protobuf bytes, so a page always fits a default gRPC client (4 MiB) and, as JSON (at most
# about 6 times larger, for text made of escaped control characters), the gateway's 8 MiB
# response buffer. A page always holds at least one experiment; one is at most about 260 KiB.
PAGE_BUDGET_BYTES: Final = 512 * KIB
# A refused request names at most this many fields (and says how many more there were), and
# their text stays under the byte budget: the google.rpc.BadRequest travels in a gRPC trailer,
# which a default client caps at 8 KiB.
MAX_FIELD_VIOLATIONS: Final = 50
FIELD_VIOLATIONS_BUDGET_BYTES: Final = 4 * KIB
# Times the API accepts: what both databases store and read back identically, in any session
# time zone (a date at year 1 or 9999 can cross into year 0 or 10000 once shifted by an offset).
EARLIEST_TIME: Final = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_TIME: Final = datetime(9999, 1, 1, tzinfo=UTC)  # exclusive
# A request's headers: the sum of each header's name and value lengths in bytes, pseudo-headers
# (:path, :authority...) and the headers proxies add (x-forwarded-*, x-envoy-*, x-request-id)
# not counted. The same number at the gateway (431) and at the gRPC server (INVALID_ARGUMENT),
# so nothing the gateway passes is refused behind it. An API key, an etag and an idempotency key
# take well under 1 KiB; 16 KiB leaves room for cookies and tracing headers.
MAX_HEADER_BYTES: Final = 16 * KIB
# What grpcio itself accepts (its soft and hard metadata limits, counted as HPACK does: name,
# value and 32 bytes per header, pseudo-headers included): far above MAX_HEADER_BYTES, so that
# the server refuses in its own words (INVALID_ARGUMENT) rather than grpcio (RESOURCE_EXHAUSTED,
# at random between its default 8 KiB soft and 16 KiB hard limits), and above anything the
# gateway forwards (its codec takes 64 KiB of headers and repeats the path in
# x-envoy-original-path).
GRPC_METADATA_BYTES: Final = 256 * KIB
