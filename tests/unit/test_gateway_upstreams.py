"""The gateway's instances (EXPERIMENTS_UPSTREAMS) and the calls it may send to another one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway import idempotent, launcher, upstreams
from server.config import ConfigError

SERVICE = "/experiments.v5.ExperimentService/"
SERVICE_CONFIG = Path(__file__).resolve().parents[2] / "clients" / "grpc-service-config.json"


def test_upstreams_are_host_port_entries_and_a_name_needs_dns() -> None:
    addresses = upstreams.parse("127.0.0.1:5001, [::1]:5002")
    named = upstreams.parse("experiments.default.svc:50051,10.0.0.1:50051")

    assert addresses == (upstreams.Upstream("127.0.0.1", 5001), upstreams.Upstream("::1", 5002))
    assert upstreams.discovery(addresses) == "type: STATIC"
    assert "envoy.clusters.dns" in upstreams.discovery(named)


@pytest.mark.parametrize("value", ["", "localhost", "localhost:http", "host:70000", ":5000"])
def test_an_upstream_that_is_not_host_port_is_named(value: str) -> None:
    with pytest.raises(ConfigError, match="EXPERIMENTS_UPSTREAMS"):
        upstreams.parse(value)


def test_only_reads_and_keyed_creates_are_retried_on_another_instance() -> None:
    reads = idempotent.idempotent_paths(launcher.DESCRIPTOR)
    creates = idempotent.create_paths(launcher.DESCRIPTOR)

    assert {SERVICE + name for name in ("GetExperiment", "ListExperiments")} <= set(reads)
    assert {
        SERVICE + name
        for name in ("ListExperimentRevisions", "ListExperimentChanges", "AssignVisitor")
    } <= set(reads)
    assert creates == [SERVICE + "CreateExperiment"]
    for write in ("CreateExperiment", "UpdateExperiment", "DeleteExperiment"):
        assert SERVICE + write not in reads


def test_the_documented_service_config_retries_exactly_the_reads() -> None:
    config = json.loads(SERVICE_CONFIG.read_text())
    (retried,) = [method for method in config["methodConfig"] if "retryPolicy" in method]
    named = {f"/{name['service']}/{name['method']}" for name in retried["name"]}
    reads = set(idempotent.idempotent_paths(launcher.DESCRIPTOR)) - {idempotent.HEALTH_CHECK}

    assert named == reads
    assert retried["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]
    assert config["loadBalancingConfig"] == [{"round_robin": {}}]
