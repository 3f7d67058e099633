"""The TypeScript implementation of visitor assignment (clients/typescript/src/assignment.ts)
against contract/assignment-vectors.json: clients/typescript/test/assignment.test.ts.

It needs Node and the pinned tsc, not the server: it sits with the other TypeScript test, and
compiles only those two files (tsconfig.assignment.json) into a folder of its own, so it can run
beside `npm test` (which compiles into dist/).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TYPESCRIPT = ROOT / "clients" / "typescript"


def test_typescript_assignment_passes_every_vector(tmp_path: Path) -> None:
    tsc = TYPESCRIPT / "node_modules" / ".bin" / "tsc"
    if not tsc.exists():
        pytest.fail("clients/typescript/node_modules is missing: `make test` runs npm ci")
    compiled = subprocess.run(
        [str(tsc), "-p", "tsconfig.assignment.json", "--outDir", str(tmp_path)],
        cwd=TYPESCRIPT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    env = {
        **os.environ,
        "EXPERIMENTS_ASSIGNMENT_VECTORS": str(ROOT / "contract" / "assignment-vectors.json"),
    }
    result = subprocess.run(
        ["node", "--test", str(tmp_path / "test" / "assignment.test.js")],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "# fail 0" in result.stdout and "# pass 0\n" not in result.stdout, result.stdout
