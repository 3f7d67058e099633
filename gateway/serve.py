"""The `experiments-gateway` command: Envoy alone, in front of the instances named by
EXPERIMENTS_UPSTREAMS (gateway/upstreams.py), on EXPERIMENTS_HTTP_HOST:EXPERIMENTS_HTTP_PORT,
for REST and native gRPC alike; the other EXPERIMENTS_HTTP_* and CORS settings as `make run`.

It prints one line once Envoy listens, and serves until SIGTERM or Ctrl-C, which stop Envoy.
"""

from __future__ import annotations

import signal
import sys
import tempfile
import threading
from pathlib import Path
from types import FrameType

from gateway import launcher, upstreams
from server.config import ConfigError, Settings


def main() -> int:
    try:
        settings = Settings.from_env()
        instances = upstreams.parse(settings.upstreams)
        resolver = None
        if settings.upstreams_resolver:
            (resolver,) = upstreams.parse(
                settings.upstreams_resolver, "EXPERIMENTS_UPSTREAMS_RESOLVER"
            )
    except ConfigError as error:
        print(f"experiments-gateway: {error}", file=sys.stderr)
        return 1
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(signum, on_signal)
    with tempfile.TemporaryDirectory(prefix="experiments-gateway-") as workdir:
        try:
            config = launcher.render_config(
                http_host=settings.http_host,
                http_port=settings.http_port,
                upstreams=instances,
                dns_resolver=resolver,
                cors_origins=settings.cors_origins,
            )
            envoy = launcher.start_envoy(config, Path(workdir))
        except launcher.StartupError as error:
            print(f"experiments-gateway: {error}", file=sys.stderr)
            return 1
        shown = ",".join(f"{u.host}:{u.port}" for u in instances)
        print(
            f"experiments-gateway: REST and gRPC on {settings.http_host}:{envoy.http_port}, "
            f"in front of {shown}; Envoy's admin interface (stats, health) on {envoy.admin}",
            flush=True,
        )
        # SIGCHLD too: Envoy exiting on its own ends the gateway (exit code 1).
        while envoy.process.poll() is None and not stop.is_set():
            stop.wait()
        if envoy.process.poll() is not None:
            print("experiments-gateway: Envoy stopped unexpectedly", file=sys.stderr)
            return 1
        envoy.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
