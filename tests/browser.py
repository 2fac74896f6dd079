"""Headless Chromium for tests of the HTML report, driven by Playwright with Debian's chromium.

Without Playwright or a browser the tests skip, unless ``NEURONSCOPE_REQUIRE_BROWSER=1`` (set by
``scripts/test.sh`` when chromium is installed): then they fail, so that CI never passes by skipping.
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

REQUIRE_ENV = "NEURONSCOPE_REQUIRE_BROWSER"
VIEWPORT = {"width": 1280, "height": 900}


def _unavailable(reason: str) -> None:
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason}, and {REQUIRE_ENV}=1 forbids skipping the browser tests")
    pytest.skip(reason)


@contextmanager
def launch_browser() -> Iterator[Any]:
    """Yields a headless Chromium ``Browser``: Debian's ``chromium`` if present, else Playwright's own."""
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install playwright)")
    exe = shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as p:
        try:
            if Path(exe).exists():
                browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox"])
            else:
                browser = p.chromium.launch(args=["--no-sandbox"])
        except Error as e:
            _unavailable(f"no chromium to launch (apt-get install chromium): {str(e).splitlines()[0]}")
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class PageLog:
    """What a page reported while it was open: console errors/warnings, uncaught errors, dialogs."""

    console: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        return self.console + self.errors + self.dialogs


def open_page(browser: Any, path: str | Path, viewport: dict | None = None) -> tuple[Any, PageLog]:
    """Opens ``path`` via ``file://`` in a fresh page; returns the page and its log (filled as it runs).

    Listeners are attached before navigation, so errors raised while the page loads are caught too;
    a dialog (``alert`` and friends) is recorded and dismissed so that it cannot block the test.
    """
    page = browser.new_page(viewport=viewport or VIEWPORT)
    log = PageLog()
    page.on(
        "console",
        lambda m: log.console.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None,
    )
    page.on("pageerror", lambda e: log.errors.append(f"pageerror: {e}"))

    def on_dialog(d: Any) -> None:
        log.dialogs.append(f"dialog {d.type}: {d.message}")
        d.dismiss()

    page.on("dialog", on_dialog)
    page.goto(Path(path).resolve().as_uri())
    page.wait_for_load_state("load")
    return page, log
