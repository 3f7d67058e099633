"""One HTTP/2 exchange over cleartext (h2c, prior knowledge), headers given as raw bytes.

For what ordinary clients refuse to send (a header value that is not UTF-8, a `-bin` value
that is not base64, an exact header size) and for what they hide (trailers, resets). The
request goes out once the peer's SETTINGS arrived and were acknowledged, as real clients do,
so that the peer's header limits apply to it.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import h2.config
import h2.connection
import h2.events
import hpack

TIMEOUT = 10.0
Headers = Sequence[tuple[bytes, bytes]]


@dataclass(frozen=True)
class Exchange:
    status: int
    headers: dict[str, str]
    body: bytes
    trailers: dict[str, str] = field(default_factory=dict)
    # The RST_STREAM error code when the peer reset the stream instead of answering.
    reset: int | None = None


def exchange(host: str, port: int, headers: Headers, body: bytes = b"") -> Exchange:
    """Sends `headers` (pseudo-headers first) and `body`; returns what came back."""
    connection = h2.connection.H2Connection(
        h2.config.H2Configuration(
            client_side=True,
            header_encoding=None,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
    )
    connection.encoder = _LiteralEncoder()
    connection.initiate_connection()
    with socket.create_connection((host, port), timeout=TIMEOUT) as sock:
        sock.sendall(connection.data_to_send())
        _receive(sock, connection, until=h2.events.RemoteSettingsChanged)
        sock.sendall(connection.data_to_send())  # the SETTINGS acknowledgement
        stream = connection.get_next_available_stream_id()
        connection.send_headers(stream, headers, end_stream=not body)
        if body:
            connection.send_data(stream, body, end_stream=True)
        sock.sendall(connection.data_to_send())
        return _response(sock, connection, stream)


def grpc_call(
    host: str, port: int, method: str, request: bytes, metadata: Headers = ()
) -> Exchange:
    """A unary gRPC call of `method` (/package.Service/Method) with `metadata` as given."""
    headers: Headers = [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":path", method.encode()),
        (b":authority", f"{host}:{port}".encode()),
        (b"content-type", b"application/grpc"),
        (b"te", b"trailers"),
        *metadata,
    ]
    return exchange(host, port, headers, b"\x00" + struct.pack(">I", len(request)) + request)


def grpc_status(response: Exchange) -> int:
    """The gRPC status code of a call: in the trailers, or in the headers of a trailers-only
    answer."""
    found = response.trailers.get("grpc-status", response.headers.get("grpc-status"))
    assert found is not None, response
    return int(found)


class _LiteralEncoder(hpack.Encoder):
    """Header values as they are: hpack's Huffman coding, in pure Python, takes seconds for the
    large headers the tests send."""

    def encode(self, headers: Any, huffman: bool = True) -> bytes:
        return super().encode(headers, huffman=False)


def _receive(
    sock: socket.socket, connection: h2.connection.H2Connection, *, until: type
) -> list[h2.events.Event]:
    events: list[h2.events.Event] = []
    while not any(isinstance(event, until) for event in events):
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the peer closed the connection")
        events += connection.receive_data(chunk)
    return events


def _response(sock: socket.socket, connection: h2.connection.H2Connection, stream: int) -> Exchange:
    status, headers, trailers, body = 0, {}, {}, bytearray()
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the peer closed the connection mid-response")
        for event in connection.receive_data(chunk):
            if isinstance(event, h2.events.ResponseReceived):
                headers = _text(event.headers)
                status = int(headers.pop(":status"))
            elif isinstance(event, h2.events.DataReceived):
                body += event.data
                connection.acknowledge_received_data(event.flow_controlled_length, stream)
            elif isinstance(event, h2.events.TrailersReceived):
                trailers = _text(event.headers)
            elif isinstance(event, h2.events.StreamReset):
                return Exchange(status, headers, bytes(body), trailers, int(event.error_code))
            elif isinstance(event, h2.events.StreamEnded):
                return Exchange(status, headers, bytes(body), trailers)
            elif isinstance(event, h2.events.ConnectionTerminated):
                raise ConnectionError(f"the peer closed the connection: {event.error_code!r}")
        sock.sendall(connection.data_to_send())


def _text(headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
    return {name.decode(): value.decode("latin-1") for name, value in headers}
