"""Clients that other teams' own generators make from the contract, used as generated, against
the real server and Envoy: Python from the OpenAPI document (openapi-python-client), Go from the
proto with Debian's toolchain (protoc-gen-go, protoc-gen-go-grpc, grpc-go). Each generates into a
temporary folder and runs the same round trip (clients/python/roundtrip.py,
clients/go/roundtrip_test.go): create, get, list following the next page, update with If-Match,
delete, and a refused create read as google.rpc.BadRequest.

The Go test runs where Debian's Go packages are installed (`make test` installs them when run as
root); elsewhere it is not generated and the run says so in one line (tests/e2e/go_client.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e import go_client
from tests.e2e.stack import Stack, World

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = ROOT / "openapi" / "experiments.v5.yaml"
PYTHON_CLIENT = ROOT / "clients" / "python"
GO_CLIENT = ROOT / "clients" / "go"
# The import path of the generated package: the proto's go_package.
GO_PACKAGE = "example.com/experiments/gen/go/experiments/v5"


def _demo_env(stack: Stack, world: World) -> dict[str, str]:
    return {
        **os.environ,
        "EXPERIMENTS_REST_URL": stack.base_url,
        "EXPERIMENTS_GRPC_TARGET": f"127.0.0.1:{stack.grpc_port}",
        "EXPERIMENTS_KEY": world.tokens.settings,
        "EXPERIMENTS_ORG": world.organization_id,
        "EXPERIMENTS_GOAL": world.goal_id,
        "EXPERIMENTS_ROOMS": ",".join(world.room_ids),
    }


def _run(
    command: list[str], env: dict[str, str], cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        command, env=env, cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, f"{command}\n{result.stdout}{result.stderr}"
    return result


# The clients' encoding against the contract; the server's storage is the e2e suite's concern.
@pytest.mark.one_database
def test_a_python_client_generated_from_the_openapi_document_round_trips(
    stack: Stack, fresh_world: World, tmp_path: Path
) -> None:
    bin_dir = Path(sys.executable).parent
    # The generator's own post-processing runs ruff, from the same virtualenv.
    path = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    _run(
        [
            str(bin_dir / "openapi-python-client"),
            "generate",
            "--path",
            str(DOCUMENT),
            "--config",
            str(PYTHON_CLIENT / "openapi-python-client.yaml"),
            "--meta",
            "none",
            "--output-path",
            str(tmp_path / "experiments_client"),
        ],
        env={**os.environ, "PATH": path},
    )
    roundtrip = str(PYTHON_CLIENT / "roundtrip.py")
    # The generated types fit a client written without placeholders (the generated modules
    # themselves are the generator's business: followed silently).
    _run(
        [
            str(bin_dir / "mypy"),
            "--strict",
            "--follow-imports=silent",
            "--cache-dir",
            str(tmp_path / "mypy-cache"),
            roundtrip,
        ],
        env={**os.environ, "MYPYPATH": str(tmp_path)},
    )
    env = {**_demo_env(stack, fresh_world), "PYTHONPATH": str(tmp_path)}

    result = _run([sys.executable, roundtrip], env=env)

    assert "delete: 204, then get: 404" in result.stdout, result.stdout


@pytest.mark.one_database
@pytest.mark.go
def test_a_go_client_generated_from_the_proto_round_trips_over_grpc(
    stack: Stack, fresh_world: World, tmp_path: Path
) -> None:
    assert not go_client.missing(), go_client.status()
    source = tmp_path / "gopath" / "src"
    source.mkdir(parents=True)
    # protoc from grpcio-tools (it adds the google/protobuf imports), Debian's plugins from PATH;
    # the output lands at the go_package path. The steps of clients/README.md, "Go".
    _run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-I",
            "protos",
            "-I",
            "third_party/googleapis",
            f"--go_out={source}",
            f"--go-grpc_out={source}",
            "experiments/v5/experiments.proto",
        ],
        env=dict(os.environ),
    )
    assert (source / GO_PACKAGE / "experiments_grpc.pb.go").exists()
    test_package = source / "example.com" / "experiments" / "roundtrip"
    test_package.mkdir(parents=True)
    shutil.copy(GO_CLIENT / "roundtrip_test.go", test_package)
    env = {
        **_demo_env(stack, fresh_world),
        # GOPATH mode over Debian's packaged libraries: nothing is downloaded.
        "GO111MODULE": "off",
        "GOPATH": f"{tmp_path / 'gopath'}{os.pathsep}{go_client.GOCODE}",
        "GOPROXY": "off",
        "GOFLAGS": "",
    }
    if "HOME" not in env and "GOCACHE" not in env:
        env["GOCACHE"] = str(tmp_path / "go-cache")

    result = _run(["go", "test", "-v", "-count=1", "."], env=env, cwd=test_package)

    assert "--- PASS: TestRoundTrip" in result.stdout, result.stdout
