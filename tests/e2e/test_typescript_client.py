"""The generated TypeScript client (clients/typescript) against the real server and Envoy:
clients/typescript/test/roundtrip.test.ts, over gRPC and over REST."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.e2e.stack import Stack, World

TYPESCRIPT = Path(__file__).resolve().parent.parent.parent / "clients" / "typescript"


# The client's encoding against the contract; the server's storage is the e2e suite's concern.
@pytest.mark.one_database
def test_typescript_client_round_trip(stack: Stack, fresh_world: World) -> None:
    if not (TYPESCRIPT / "node_modules" / ".bin" / "tsc").exists():
        pytest.fail("clients/typescript/node_modules is missing: `make test` runs npm ci")
    env = {
        **os.environ,
        "EXPERIMENTS_GRPC_URL": f"http://127.0.0.1:{stack.grpc_port}",
        "EXPERIMENTS_REST_URL": stack.base_url,
        "EXPERIMENTS_KEY": fresh_world.tokens.settings,
        "EXPERIMENTS_ORG": fresh_world.organization_id,
        "EXPERIMENTS_GOAL": fresh_world.goal_id,
        "EXPERIMENTS_ROOMS": ",".join(fresh_world.room_ids),
    }
    # `npm test` type-checks the client and the test with tsc, then runs node's test runner.
    result = subprocess.run(
        ["npm", "test", "--silent"],
        cwd=TYPESCRIPT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "# fail 0" in result.stdout, result.stdout
