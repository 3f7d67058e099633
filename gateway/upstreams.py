"""The instances the gateway sends calls to: EXPERIMENTS_UPSTREAMS, comma-separated host:port.

A host that is an IP address is that one instance; a DNS name stands for every address it
resolves to (each an instance on that port, as a Kubernetes headless Service gives), resolved
again every second by Envoy (STRICT_DNS in gateway/envoy.yaml).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence
from dataclasses import dataclass

from server.config import ConfigError

VARIABLE = "EXPERIMENTS_UPSTREAMS"


@dataclass(frozen=True)
class Upstream:
    host: str  # an IP address (no brackets) or a DNS name
    port: int

    @property
    def is_address(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True


def parse(value: str, variable: str = VARIABLE) -> tuple[Upstream, ...]:
    """EXPERIMENTS_UPSTREAMS: `host:port[,host:port...]`, an IPv6 address in brackets."""
    upstreams = []
    for entry in (part.strip() for part in value.split(",")):
        if not entry:
            continue
        host, separator, port = entry.rpartition(":")
        host = host.strip("[]")
        if not separator or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(
                f"{variable}: {entry!r} is not host:port; write each instance as host:port "
                "(a DNS name stands for all of its addresses), separated by commas"
            )
        upstreams.append(Upstream(host, int(port)))
    if not upstreams:
        raise ConfigError(f"{variable} must name at least one instance as host:port")
    return tuple(upstreams)


# How often a DNS name is resolved again.
DNS_REFRESH = "1s"


def discovery(upstreams: Sequence[Upstream], resolver: Upstream | None = None) -> str:
    """The clusters' discovery, as a YAML line: `type: STATIC` when every host is an address,
    else Envoy's DNS cluster (which takes addresses too), asking `resolver` if given (a DNS
    server's address and port) rather than the system's resolvers."""
    if all(upstream.is_address for upstream in upstreams):
        return "type: STATIC"
    dns: dict[str, object] = {
        "@type": "type.googleapis.com/envoy.extensions.clusters.dns.v3.DnsCluster",
        "dns_refresh_rate": DNS_REFRESH,
        # Each instance once: an IPv4 address if the name has one, else IPv6.
        "dns_lookup_family": "V4_PREFERRED",
    }
    if resolver is not None:
        dns["typed_dns_resolver_config"] = {
            "name": "envoy.network.dns_resolver.cares",
            "typed_config": {
                "@type": "type.googleapis.com/"
                "envoy.extensions.network.dns_resolver.cares.v3.CaresDnsResolverConfig",
                "resolvers": [
                    {"socket_address": {"address": resolver.host, "port_value": resolver.port}}
                ],
            },
        }
    return "cluster_type: " + json.dumps({"name": "envoy.clusters.dns", "typed_config": dns})


def lb_endpoints(upstreams: Sequence[Upstream]) -> str:
    """The clusters' lb_endpoints, as a YAML (JSON) flow list."""
    return json.dumps(
        [
            {
                "endpoint": {
                    "address": {
                        "socket_address": {"address": upstream.host, "port_value": upstream.port}
                    }
                }
            }
            for upstream in upstreams
        ]
    )
