"""REST clients of the end-to-end tests: HTTP/1.1 (http.client), HTTP/2 (httpx, h2c), and raw
exchanges of either version (exact header bytes, trailers).

They send exactly what they are given and return exactly what came back, status, headers and
body, without raising on error statuses: the tests judge them.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from tests import h2c
from tests.h2c import Headers

HTTP_1_1 = "HTTP/1.1"
HTTP_2 = "HTTP/2"
TIMEOUT = 10.0


@dataclass(frozen=True)
class Response:
    status: int
    # Lower-case names; a repeated header's values joined with ", ".
    headers: dict[str, str]
    body: bytes
    protocol: str
    trailers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body)


class RestClient:
    """Calls the gateway at `base_url` (http://host:port) with one HTTP version.

    A target is a path (/api/v5/...) or a full URL, such as a list page's `next`, which is
    then followed as is: to the host and port it names.
    """

    def __init__(self, base_url: str, protocol: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.protocol = protocol
        self._http2 = (
            httpx.Client(http1=False, http2=True, timeout=TIMEOUT) if protocol == HTTP_2 else None
        )

    def close(self) -> None:
        if self._http2 is not None:
            self._http2.close()

    def request(
        self,
        method: str,
        target: str,
        *,
        token: str | None = None,
        json_body: Any = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        url = target if "://" in target else self.base_url + target
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Token {token}"
        if json_body is not None:
            content = json.dumps(json_body).encode()
            sent.setdefault("Content-Type", "application/json")
        if self._http2 is not None:
            response = self._http2.request(method, url, content=content, headers=sent)
            return Response(
                status=response.status_code,
                headers={
                    name: ", ".join(response.headers.get_list(name)) for name in response.headers
                },
                body=response.content,
                protocol=response.http_version,
            )
        return _http1(method, url, content, sent)

    def get(self, target: str, **kwargs: Any) -> Response:
        return self.request("GET", target, **kwargs)

    def post(self, target: str, **kwargs: Any) -> Response:
        return self.request("POST", target, **kwargs)

    def put(self, target: str, **kwargs: Any) -> Response:
        return self.request("PUT", target, **kwargs)

    def delete(self, target: str, **kwargs: Any) -> Response:
        return self.request("DELETE", target, **kwargs)


def _http1(method: str, url: str, content: bytes | None, headers: dict[str, str]) -> Response:
    parts = urlsplit(url)
    assert parts.scheme == "http", url
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=TIMEOUT)
    try:
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        # The gateway may answer (413) and close before a large body is sent; as HTTP/1.1
        # clients should, read the answer that came back rather than the failed write.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            connection.request(method, path, body=content, headers=headers)
        response = connection.getresponse()
        return Response(response.status, _merged(response), response.read(), HTTP_1_1)
    finally:
        connection.close()


def _merged(response: http.client.HTTPResponse) -> dict[str, str]:
    """The response's headers by lower-case name, a repeated one's values joined with ", "."""
    received: dict[str, str] = {}
    for name, value in response.getheaders():
        key = name.lower()
        received[key] = f"{received[key]}, {value}" if key in received else value
    return received


def raw_http1(
    base_url: str, method: str, path: str, headers: Headers, body: bytes = b""
) -> Response:
    """One HTTP/1.1 exchange with exactly `headers` (and a Host, which HTTP/1.1 requires, if
    they lack one): for header bytes http.client would not send as given."""
    parts = urlsplit(base_url)
    if not any(name.lower() == b"host" for name, _ in headers):
        headers = [(b"host", parts.netloc.encode()), *headers]
    if body:
        headers = [*headers, (b"content-length", str(len(body)).encode())]
    request = f"{method} {path} HTTP/1.1\r\n".encode()
    request += b"".join(name + b": " + value + b"\r\n" for name, value in headers) + b"\r\n"
    with socket.create_connection(
        (parts.hostname or "", parts.port or 80), timeout=TIMEOUT
    ) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request + body)
        response = http.client.HTTPResponse(sock, method=method)
        response.begin()
        return Response(response.status, _merged(response), response.read(), HTTP_1_1)


def raw_http2(
    base_url: str,
    method: str,
    path: str,
    *,
    token: str | None = None,
    json_body: Any = None,
    headers: Headers = (),
    content: bytes = b"",
) -> Response:
    """One HTTP/2 exchange on a fresh h2c connection, trailers included (httpx drops them),
    with `headers` sent as raw bytes after the usual ones, and a body: `json_body`, or
    `content` as given."""
    parts = urlsplit(base_url)
    body = content if json_body is None else json.dumps(json_body).encode()
    sent: list[tuple[bytes, bytes]] = [
        (b":method", method.encode()),
        (b":path", path.encode()),
        (b":scheme", b"http"),
        (b":authority", parts.netloc.encode()),
    ]
    if token is not None:
        sent.append((b"authorization", f"Token {token}".encode()))
    if json_body is not None:
        sent.append((b"content-type", b"application/json"))
    if body:
        sent.append((b"content-length", str(len(body)).encode()))
    answer = h2c.exchange(parts.hostname or "", parts.port or 80, [*sent, *headers], body)
    if answer.reset is not None:
        raise ConnectionError(f"the gateway reset the stream: error code {answer.reset}")
    return Response(answer.status, answer.headers, answer.body, HTTP_2, answer.trailers)


def assert_error(response: Response, status: int, code: int) -> dict[str, Any]:
    """The response is `status` with a google.rpc.Status JSON body of `code`; returns the body."""
    assert response.status == status, (response.status, response.body)
    assert response.headers.get("content-type", "").startswith("application/json"), response.headers
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    assert isinstance(body["message"], str) and body["message"], body
    assert isinstance(body["details"], list), body
    return body


def field_violations(body: dict[str, Any]) -> dict[str, str]:
    """The BadRequest field violations of an error body: field -> description."""
    found: dict[str, str] = {}
    for detail in body["details"]:
        if detail["@type"] == "type.googleapis.com/google.rpc.BadRequest":
            for violation in detail["field_violations"]:
                found[violation["field"]] = violation["description"]
    return found
