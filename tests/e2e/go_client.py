"""Whether the Go client test can run here: Debian's Go toolchain and packaged libraries.

The packages (clients/README.md): golang-go, protoc-gen-go, protoc-gen-go-grpc,
golang-google-grpc-dev, golang-google-genproto-dev and golang-github-golang-protobuf-1-5-dev.
Without the last one named, apt picks golang-github-golang-protobuf-1-3-dev for grpc-go, which
cannot marshal google.protobuf.Value (a nil pointer panic on the first CreateExperiment).
`make test` installs them when run as root; elsewhere the test is not generated and the run says
so in one line, as for PostgreSQL. With EXPERIMENTS_TEST_GO=1 (CI) the test runs regardless, and
fails naming what is missing.

    python -m tests.e2e.go_client             # prints the line; exits 1 when the test cannot run
    python -m tests.e2e.go_client --packages  # the Debian packages, for apt-get install
"""

from __future__ import annotations

import os
import shutil
import sys
from functools import cache
from pathlib import Path

PACKAGES = (
    "golang-go",
    "protoc-gen-go",
    "protoc-gen-go-grpc",
    "golang-google-grpc-dev",
    "golang-google-genproto-dev",
    "golang-github-golang-protobuf-1-5-dev",
)
# Debian's Go libraries, for builds in GOPATH mode: nothing is downloaded.
GOCODE = Path("/usr/share/gocode")
SOURCE = GOCODE / "src"
# What each package provides that the test needs.
PROVIDED: dict[str, str | Path] = {
    "golang-go": "go",
    "protoc-gen-go": "protoc-gen-go",
    "protoc-gen-go-grpc": "protoc-gen-go-grpc",
    "golang-google-grpc-dev": SOURCE / "google.golang.org/grpc/status",
    "golang-google-genproto-dev": SOURCE / "google.golang.org/genproto/googleapis/rpc/errdetails",
    # golang/protobuf 1.4+ is built on google.golang.org/protobuf (registry.go); 1.3 is not.
    "golang-github-golang-protobuf-1-5-dev": SOURCE
    / "github.com/golang/protobuf/proto/registry.go",
}
REQUIRED_BY_ENV = "EXPERIMENTS_TEST_GO"


@cache
def missing() -> tuple[str, ...]:
    """The packages whose files are not here."""
    return tuple(
        package
        for package, provided in PROVIDED.items()
        if not (provided.exists() if isinstance(provided, Path) else shutil.which(provided))
    )


def required() -> bool:
    return os.environ.get(REQUIRED_BY_ENV, "") not in ("", "0")


def runs() -> bool:
    return required() or not missing()


def status() -> str:
    if not missing():
        return "Go client test runs with Debian's Go toolchain"
    if required():
        return f"Go client test runs ({REQUIRED_BY_ENV} is set) but will fail: {_install_hint()}"
    return f"Go client test NOT run: {_install_hint()}"


def _install_hint() -> str:
    return f"missing {', '.join(missing())} (sudo apt-get install {' '.join(PACKAGES)})"


if __name__ == "__main__":
    if sys.argv[1:] == ["--packages"]:
        print(" ".join(PACKAGES))
    else:
        print(status())
        sys.exit(0 if not missing() else 1)
