"""A tiny DNS server for tests: one name -> a fixed set of IPv4 addresses (A records), over UDP.

Enough for grpcio's c-ares resolver (`dns://127.0.0.1:PORT/name:port`) and Envoy's (a DNS
cluster with a resolver of its own) to see several instances behind one name, as a Kubernetes
headless Service gives, without touching the machine's resolver. Any other question gets an
empty answer (NOERROR) for the name, NXDOMAIN for other names.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import threading
from collections.abc import Sequence

TYPE_A = 1
CLASS_IN = 1
# Short, so that a resolver that honours it asks again soon.
TTL_SECONDS = 1


class DnsServer:
    def __init__(self, name: str, addresses: Sequence[str]) -> None:
        self.name = name.rstrip(".").lower()
        self.answer_with(addresses)
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, name="dns", daemon=True)
        self._thread.start()

    def answer_with(self, addresses: Sequence[str]) -> None:
        """From now on, the name stands for these addresses."""
        self.addresses = [ipaddress.IPv4Address(address).packed for address in addresses]

    def close(self) -> None:
        self._socket.close()

    def _serve(self) -> None:
        while True:
            try:
                query, client = self._socket.recvfrom(512)
            except OSError:
                return  # closed
            reply = self.answer(query)
            if reply is not None:
                self._socket.sendto(reply, client)

    def answer(self, query: bytes) -> bytes | None:
        if len(query) < 12:
            return None
        (ident, flags, questions) = struct.unpack("!HHH", query[:6])
        if questions != 1:
            return None
        labels, offset = [], 12
        while offset < len(query) and query[offset] != 0:
            length = query[offset]
            labels.append(query[offset + 1 : offset + 1 + length].decode("ascii", "replace"))
            offset += 1 + length
        question_end = offset + 5  # the zero byte, QTYPE, QCLASS
        if question_end > len(query):
            return None
        qtype, qclass = struct.unpack("!HH", query[offset + 1 : question_end])
        ours = ".".join(labels).lower() == self.name
        answers = self.addresses if ours and (qtype, qclass) == (TYPE_A, CLASS_IN) else []
        rcode = 0 if ours else 3  # NXDOMAIN
        # QR, opcode copied, AA, RD copied, RA.
        reply_flags = 0x8000 | (flags & 0x7900) | 0x0400 | 0x0080 | rcode
        header = struct.pack("!HHHHHH", ident, reply_flags, 1, len(answers), 0, 0)
        records = b"".join(
            struct.pack("!HHHIH", 0xC00C, TYPE_A, CLASS_IN, TTL_SECONDS, 4) + address
            for address in answers
        )
        return header + query[12:question_end] + records
