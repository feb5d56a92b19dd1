"""Report fixtures: the demo run built once per session (tiny models, no dataset/ folder) and one headless Chromium."""

import pytest

from tests.helpers.browser import Page, launch_browser
from tests.helpers.paths import REPO

DEMO = REPO / "recipes" / "curate" / "demo.yaml"


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """`emocurate build --recipe recipes/curate/demo.yaml --no-publish`: every drop reason, on random tiny models.
    Read-only for tests: copy it (shutil.copytree) before refiltering."""
    from emocurate.recipe import load_recipe
    from emocurate.run.driver import build

    run = tmp_path_factory.mktemp("report-demo") / "run"
    build(load_recipe(DEMO), run, publish=False)
    return run


# per module, not per session: Playwright's sync API keeps an asyncio loop marked as running in this thread while it
# is started, and later tests (a caption backend called from inside a loop) need the thread without one
@pytest.fixture(scope="module")
def browser():
    pw, chromium = launch_browser()
    yield chromium
    chromium.close()
    pw.stop()


@pytest.fixture
def page(browser):
    p = Page(browser)
    yield p
    p.close()
