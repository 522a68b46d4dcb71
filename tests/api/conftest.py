"""Fixtures of the API tests: Debian's Chromium, headless, driven by Playwright."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import Browser, sync_playwright

if TYPE_CHECKING:
    from tests.api.test_viewer import Viewer

# software WebGL: the machines that run the tests have no GPU
WEBGL = ["--enable-unsafe-swiftshader", "--use-angle=swiftshader", "--ignore-gpu-blocklist"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's chromium, one per test module (Playwright's sync API allows one at a time)."""
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is missing: run `make setup`"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=WEBGL)
        yield launched
        launched.close()


@pytest.fixture
def viewer(browser: Browser, sample_server: str) -> Iterator[Viewer]:
    """The viewer on the sample city, opened and settled; no request may leave the machine
    and the console must stay free of errors."""
    from tests.api.test_viewer import Viewer

    page = Viewer(browser, sample_server)
    yield page
    assert page.outside == [], f"requests left the machine: {page.outside}"
    assert page.errors == [], f"console errors: {page.errors}"
    page.close()
