"""The report in a real browser: Debian's chromium (installed by .ci/run), driven by Playwright,
loads the page from disk with every request other than file:// refused, finds no console error,
shows the key sections on a laptop-sized window, and leaves a full-page screenshot in
``test-artifacts/report.png``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOT = Path(__file__).resolve().parents[2] / "test-artifacts" / "report.png"
VIEWPORT = {"width": 1366, "height": 768}  # a laptop screen
SECTIONS = (
    "#summary", "#results", "#classes", "#noise", "#data", "#longtail", "#compression", "#run",
)  # fmt: skip


@pytest.fixture(scope="module")
def chromium() -> Path:
    if not CHROMIUM.is_file():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs it (apt-get install chromium)")
        pytest.skip(
            f"{CHROMIUM} is missing; install it with: sudo apt-get install -y "
            "--no-install-recommends chromium"
        )
    return CHROMIUM


@pytest.mark.slow
def test_the_report_loads_offline_without_errors(chromium: Path, full_run: Path) -> None:
    from playwright.sync_api import Request, Route, sync_playwright

    report = full_run / "report" / "report.html"
    refused: list[str] = []
    requested: list[str] = []
    problems: list[str] = []

    def offline(route: Route) -> None:
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    def request(req: Request) -> None:
        requested.append(req.url)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=ARGS)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.on("request", request)
            page.route("**/*", offline)
            page.goto(report.as_uri(), wait_until="load")
            for section in SECTIONS:
                assert page.locator(section).is_visible(), section
            assert page.locator("#results table").first.is_visible()
            assert page.locator("svg").count() == 10
            assert page.locator("#noise a[download]").get_attribute("href") == (
                "report.suspicious_rows.csv"
            )
            assert page.locator("h1").inner_text() == "webly run report"
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= VIEWPORT["width"]  # nothing wider than the laptop's window
            cut = page.evaluate(
                "[...document.querySelectorAll('.scroll')]"
                ".filter(e => e.scrollWidth > e.clientWidth + 1)"
                ".map(e => e.parentElement.querySelector('h3').textContent)"
            )
            assert cut == []  # every table fits its block: no sideways scrolling
            SCREENSHOT.parent.mkdir(exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=True)
        finally:
            browser.close()
    assert refused == [] and problems == []
    assert all(url.startswith(("file://", "data:")) for url in requested), requested
    with Image.open(SCREENSHOT) as image:
        assert image.format == "PNG" and image.width == VIEWPORT["width"]
        assert image.height > 3 * VIEWPORT["height"]  # the whole page, not the window
        colours = image.convert("RGB").resize((200, 200)).getcolors(maxcolors=200 * 200)
        assert colours is not None and len(colours) > 50  # charts and text, not a blank page
