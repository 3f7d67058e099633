"""Builds generated/ from protos/ with grpcio-tools, checks it is current, and runs buf lint.

generated/ holds the Python messages, gRPC stubs, .pyi stubs from mypy-protobuf (messages and
the typed ExperimentServiceStub; package experiments.v5) and experiments.pb: a descriptor set
with every import and the source info (comments), which Envoy's transcoder reads and which is a
codegen input of its own (tools/openapi.py, or any tool that takes a FileDescriptorSet).
The google/api and google/rpc files come from third_party/googleapis, vendored at a pinned
version, so protoc and buf need nothing outside the repository.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
GENERATED = ROOT / "generated"
# The google/api and google/rpc files the contract imports, vendored (see its README.md).
GOOGLEAPIS = ROOT / "third_party" / "googleapis"
WELL_KNOWN = Path(protoc.__file__).parent / "_proto"
DESCRIPTOR_SET = "experiments.pb"
# Envoy needs the error details messages to print google.rpc.BadRequest in REST errors.
EXTRA_DESCRIPTORS = ["google/rpc/error_details.proto", "google/rpc/status.proto"]


# mypy-protobuf's plugins (the dev extra), beside the running interpreter.
MYPY_PLUGINS = [
    f"--plugin=protoc-gen-{name}={Path(sys.executable).parent / f'protoc-gen-{name}'}"
    for name in ("mypy", "mypy_grpc")
]


class ProtocFailed(RuntimeError):
    """protoc refused the protos; it printed why."""


def _protoc(*args: str) -> None:
    command = ["protoc", f"-I{PROTOS}", f"-I{GOOGLEAPIS}", f"-I{WELL_KNOWN}", *args]
    if protoc.main(command) != 0:
        raise ProtocFailed(f"protoc failed: {' '.join(args)}")


def _sources() -> list[str]:
    return sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))


def generate(out: Path) -> None:
    sources = _sources()
    _protoc(
        *MYPY_PLUGINS,
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        *sources,
    )
    _protoc(
        "--include_imports",
        "--include_source_info",
        f"--descriptor_set_out={out / 'experiments' / 'v5' / DESCRIPTOR_SET}",
        *sources,
        *EXTRA_DESCRIPTORS,
    )
    # Regular packages so that setuptools and mypy find them without namespace tricks.
    for directory in [out / "experiments", out / "experiments" / "v5"]:
        (directory / "__init__.py").write_text("")


def _differences(a: Path, b: Path) -> list[str]:
    comparison = filecmp.dircmp(a, b, ignore=["__pycache__"])
    found = [f"only in {a}: {n}" for n in comparison.left_only]
    found += [f"only in {b}: {n}" for n in comparison.right_only]
    found += [f"differs: {a / n}" for n in comparison.diff_files]
    for name in comparison.common_dirs:
        found += _differences(a / name, b / name)
    return found


def buf_lint(buf: str) -> None:
    # The workspace in buf.yaml holds protos/ and the vendored googleapis files.
    subprocess.run([buf, "lint"], cwd=ROOT, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if generated/ is stale")
    parser.add_argument("--buf-lint", metavar="BUF", help="run buf lint with this binary")
    args = parser.parse_args()
    if args.buf_lint:
        buf_lint(args.buf_lint)
        return
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        try:
            generate(fresh)
        except ProtocFailed as error:
            raise SystemExit(str(error)) from None
        if args.check:
            problems = _differences(fresh / "experiments", GENERATED / "experiments")
            if problems:
                print(
                    "generated/ is stale; run `make generate` and commit it:",
                    *problems,
                    sep="\n  ",
                    file=sys.stderr,
                )
                raise SystemExit(1)
            print("generated/ is current")
            return
        shutil.rmtree(GENERATED / "experiments", ignore_errors=True)
        shutil.copytree(fresh / "experiments", GENERATED / "experiments")
        print(f"generated/ rebuilt from {len(_sources())} proto file(s)")


if __name__ == "__main__":
    main()
