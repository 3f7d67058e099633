"""Every `sh` block of README.md runs as printed against the real service and a fresh demo world.

A reader fills in the variables a block says to fill (`KEY=...  # tokens.settings from the demo
JSON`, `REST=http://127.0.0.1:8080  # the REST address `make run` printed`) and pastes the rest;
this does the same: those lines get the demo world's values and the test stack's addresses (the
test cannot use `make run`'s fixed ports), nothing else is touched. The blocks run in the order
they appear, each in `bash -euo pipefail` from the repository root with the filled-in variables
set, as in the reader's shell; a block must exit 0 (the README's curl commands use
`--fail-with-body`). A block preceded by `<!-- not run by tests/e2e/test_readme.py: why -->` is left
out, with the reason in the README.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.stack import Stack, World

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
NOT_RUN = "<!-- not run by tests/e2e/test_readme.py"
FENCE = re.compile(r"^```sh\n(.*?)^```$", re.S | re.M)
# `NAME=<example>  # <what fills it>`: a variable the reader fills in.
PLACEHOLDER = re.compile(r"^(?P<name>[A-Z_]+)=\S*\s+# (?P<what>.*)$", re.M)
FROM_JSON = re.compile(r"^(?P<path>[\w.\[\]]+) from the (demo|same) JSON")


@dataclass(frozen=True)
class Block:
    line: int
    text: str


def shell_blocks() -> list[Block]:
    readme = README.read_text()
    blocks = []
    for match in FENCE.finditer(readme):
        before = readme[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        if not before.startswith(NOT_RUN):
            blocks.append(Block(readme.count("\n", 0, match.start()) + 1, match.group(1)))
    return blocks


def _from_json(document: Any, path: str) -> str:
    for part in re.findall(r"\w+|\[\d+\]", path):
        document = document[int(part[1:-1])] if part.startswith("[") else document[part]
    return str(document)


def filled_in(stack: Stack, world: World) -> dict[str, str]:
    """Every README variable a reader fills in, with this stack's and world's values."""
    demo = world.to_json()
    values: dict[str, str] = {}
    for match in PLACEHOLDER.finditer("\n".join(block.text for block in shell_blocks())):
        name, what = match["name"], match["what"]
        from_json = FROM_JSON.match(what)
        if from_json:
            values[name] = _from_json(demo, from_json["path"])
        elif what.startswith("the REST address"):
            values[name] = stack.base_url
        elif what.startswith("the gRPC address"):
            values[name] = f"127.0.0.1:{stack.grpc_port}"
    return values


def _as_filled(block: Block, values: dict[str, str]) -> str:
    def fill(match: re.Match[str]) -> str:
        name = match["name"]
        return f"{name}={values[name]}" if name in values else match[0]

    return PLACEHOLDER.sub(fill, block.text)


@pytest.mark.one_database
@pytest.mark.parametrize("block", shell_blocks(), ids=lambda block: f"README.md:{block.line}")
def test_the_readmes_shell_examples_run_as_printed(
    stack: Stack, fresh_world: World, block: Block
) -> None:
    values = filled_in(stack, fresh_world)
    script = _as_filled(block, values)
    unfilled = re.findall(r"^\w+=\.\.\.", script, re.M)
    assert not unfilled, f"README.md:{block.line}: nothing says how to fill {unfilled}"
    env = {
        **os.environ,
        **values,
        # The admin commands work on the database the stack serves.
        "EXPERIMENTS_DATABASE_URL": stack.database_url,
    }

    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert result.returncode == 0, f"README.md:{block.line}\n{result.stdout}\n{result.stderr}"


def test_the_readme_has_examples_to_run() -> None:
    # The test above cannot fail for want of blocks: the README's API examples are among them.
    assert any("/api/v5/orgs/$ORG/experiments" in block.text for block in shell_blocks())
