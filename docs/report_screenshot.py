"""Screenshot of a run's report for the README: headless Chromium (system package) via Playwright, what-if moved.

    emocurate build --recipe recipes/curate/demo.yaml --out runs/demo && emocurate report runs/demo
    python docs/report_screenshot.py runs/demo/report docs/report-demo.png
"""

import io
import sys
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright

FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run"]


def main(report: Path, png: Path, height: int = 2000) -> None:
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS)
        page = browser.new_page(viewport={"width": 1200, "height": height})
        page.goto((report / "index.html").resolve().as_uri())
        page.wait_for_selector("body[data-ready='1']")
        page.fill("#wi-conf-num", "0.22")
        page.fill("#wi-frac-num", "0.3")
        page.select_option("#f-page-size", "48")
        page.wait_for_function("Array.from(document.querySelectorAll('#tiles img')).slice(0, 12)"
                               ".every(img => img.complete && img.naturalWidth > 0)")
        shot = page.screenshot(clip={"x": 0, "y": 0, "width": 1200, "height": height})
        browser.close()
    image = Image.open(io.BytesIO(shot)).convert("RGB").quantize(colors=128)  # a palette PNG stays small
    image.save(png, optimize=True)
    print(f"{png}: {png.stat().st_size / 1000:.0f} KB")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
