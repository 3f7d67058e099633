"""Browser front ends of the CORS tests: a page served from an origin of its own, and a real
headless Chromium (Debian's `chromium`, driven by playwright-core from npm) that loads it."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
PLAYWRIGHT = ROOT / "node_modules" / "playwright-core"
SCRIPT = Path(__file__).with_name("browser.mjs")
BROWSER_TIMEOUT = 60.0
PAGE = b"<!doctype html><title>Experiments front end</title><p>front end</p>"


@dataclass(frozen=True)
class FrontEnd:
    origin: str  # http://127.0.0.1:port

    @property
    def page(self) -> str:
        return f"{self.origin}/"


class _Page(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def serve_front_end() -> Iterator[FrontEnd]:
    """A static page on 127.0.0.1 and a kernel-chosen port: an origin of its own."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield FrontEnd(f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()


def browser_missing() -> str | None:
    """Why the browser test cannot run (`make test` installs both), or None."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing: `make test` installs Debian's chromium"
    if not PLAYWRIGHT.is_dir() or shutil.which("node") is None:
        return "node or playwright-core is missing: `make test` installs playwright-core (npm)"
    return None


def run_in_browser(
    page: str, gateway: str, organization: str, token: str, scenario: str = "crud"
) -> Any:
    """Opens `page` in headless Chromium and, from it, calls the gateway with fetch(): lists and
    creates experiments, then deletes what it created ("crud"), or follows the REST watch while
    creating one ("watch"); returns what the page saw (see browser.mjs)."""
    with tempfile.TemporaryDirectory(prefix="experiments-chromium-") as profile:
        result = subprocess.run(
            ["node", str(SCRIPT)],
            input=json.dumps(
                {
                    "chromium": str(CHROMIUM),
                    "profile": profile,
                    "page": page,
                    "gateway": gateway,
                    "organization": organization,
                    "token": token,
                    "scenario": scenario,
                }
            ),
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=BROWSER_TIMEOUT,
        )
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)
