"""A real headless Chromium (the system package, /usr/bin/chromium) driven by Playwright, for pages opened from disk.

Playwright's launch() gives every browser a fresh temporary --user-data-dir; the flags below keep Chromium from calling
home. Pages record console errors, uncaught exceptions and any request that is not file: or data:.
"""

import shutil
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run"]


def launch_browser():
    """(playwright, browser), or a skip naming what to install."""
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.skip("needs Chromium: apt-get install -y chromium chromium-driver")
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright package (dev extra)")
    pw = sync_api.sync_playwright().start()
    try:
        return pw, pw.chromium.launch(executable_path=CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium"),
                                      args=FLAGS)
    except Exception:
        pw.stop()
        raise


class Page:
    """A page with what went wrong on it: `errors` (console errors, page errors) and `outside` (non-file requests)."""

    def __init__(self, browser, width=1280, height=900):
        self.context = browser.new_context(viewport={"width": width, "height": height})
        self.page = self.context.new_page()
        self.errors, self.outside = [], []
        self.page.on("console", lambda m: self.errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        self.page.on("request", lambda r: None if r.url.startswith(("file:", "data:")) else self.outside.append(r.url))

    def open(self, path: Path, ready: str = "body[data-ready='1']"):
        self.page.goto(Path(path).resolve().as_uri())
        self.page.wait_for_selector(ready, timeout=15_000)
        return self.page

    def close(self):
        self.context.close()
