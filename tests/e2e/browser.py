"""Debian's Chromium driven by Playwright, for the dashboard's end-to-end test.

No ``playwright install``: the browser is ``/usr/bin/chromium``. Console errors and page errors
are collected; screenshots go to ``$PILOTFISH_TEST_OUTPUT`` (default ``test-output/`` in the
repository) so they are kept after the run.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import REPO

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def output_dir(name: str) -> Path:
    root = Path(os.environ.get("PILOTFISH_TEST_OUTPUT") or REPO / "test-output")
    out = root / name
    out.mkdir(parents=True, exist_ok=True)
    return out


@dataclass
class Browser:
    page: Any
    out: Path
    errors: list[str] = field(default_factory=list)

    def shot(self, name: str) -> Path:
        path = self.out / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


@contextmanager
def chromium(name: str) -> Iterator[Browser]:
    if not Path(CHROMIUM).exists() or shutil.which("chromium") is None:
        pytest.skip("Debian's chromium is not installed (scripts/install-system-deps.sh)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            b = Browser(page, output_dir(name))
            page.on("console", lambda m: b.errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: b.errors.append(f"page error: {e}"))
            yield b
        finally:
            browser.close()
