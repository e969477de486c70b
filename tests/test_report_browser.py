"""The demo report in headless Chromium: it loads without console errors, every figure is
present and non-empty, and a full-page screenshot is kept as a test artefact.

Needs the Debian packages ``chromium`` and ``chromium-driver`` (``make test`` installs them
when missing, as root with apt) and ``selenium``; skips without them. The screenshot goes to
``$ECGSCALE_TEST_ARTIFACTS/report.png``, or ``test-artifacts/report.png`` in the repository.
"""

from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Every <img>, and every <figure>'s image (img, inline svg, object or canvas), as seen by
# the page: loaded, with a non-zero intrinsic and rendered size.
FIGURES_JS = """
const box = (el) => { const r = el.getBoundingClientRect(); return [r.width, r.height]; };
const images = Array.from(document.images).map((img) => ({
  src: img.currentSrc.slice(0, 80), complete: img.complete,
  natural: [img.naturalWidth, img.naturalHeight], shown: box(img)}));
const figures = Array.from(document.querySelectorAll("figure")).map((fig) => {
  const media = fig.querySelector("img, svg, object, canvas");
  const caption = fig.querySelector("figcaption");
  return {caption: caption ? caption.textContent.trim().slice(0, 80) : "",
          tag: media ? media.tagName.toLowerCase() : null, shown: media ? box(media) : [0, 0]};
});
return {images: images, figures: figures};
"""


def _browser_paths() -> tuple[str, str]:
    browser = next(
        filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None
    )
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        pytest.skip(
            "headless Chromium not found (chromium and chromedriver on PATH; `make test` "
            "installs the Debian packages chromium and chromium-driver when run as root)"
        )
    return browser, driver


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = _browser_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # Both paths are given, so Selenium Manager is never asked to download anything.
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def demo_report(tiny_study) -> Path:
    """The report of the embedded demo, shrunk (the session's ``tiny_study``)."""
    return tiny_study[2]


def _artifact_dir() -> Path:
    configured = os.environ.get("ECGSCALE_TEST_ARTIFACTS")
    path = Path(configured) if configured else ROOT / "test-artifacts"
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_demo_report_in_headless_chromium(browser, demo_report):
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get_log("browser")  # drop anything logged before the page
    browser.get(demo_report.as_uri())
    WebDriverWait(browser, 30).until(
        lambda d: d.execute_script("return document.readyState") == "complete"
    )
    WebDriverWait(browser, 30).until(
        lambda d: d.execute_script(
            "return Array.from(document.images).every((img) => img.complete)"
        )
    )

    # the full page, as a test artefact
    metrics = browser.execute_cdp_cmd("Page.getLayoutMetrics", {})
    size = metrics.get("cssContentSize") or metrics["contentSize"]
    shot = browser.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
        },
    )
    png = base64.b64decode(shot["data"])
    screenshot = _artifact_dir() / "report.png"
    screenshot.write_bytes(png)
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and screenshot.stat().st_size > 1000

    # no console errors (JavaScript exceptions, resources that failed to load, …)
    severe = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not severe, "console errors:\n" + "\n".join(entry["message"] for entry in severe)

    title = browser.execute_script("return document.querySelector('h1').textContent")
    assert title.strip(), "the report has no title"

    # every image has loaded and is non-empty, every figure shows one
    page = browser.execute_script(FIGURES_JS)
    images, figures = page["images"], page["figures"]
    assert figures, "the report shows no figure"
    broken = [
        img
        for img in images
        if not img["complete"] or min(img["natural"]) <= 0 or min(img["shown"]) <= 0
    ]
    assert not broken, f"images that did not load or are empty: {broken}"
    empty = [fig for fig in figures if fig["tag"] is None or min(fig["shown"]) <= 0]
    assert not empty, f"figures without a visible image: {empty}"

    # every figure the study drew (saved under figures/) is on the page
    drawn = {path.stem for path in (demo_report.parent / "figures").iterdir()}
    assert drawn, "the study saved no figure"
    assert len(figures) >= len(drawn), (
        f"{len(drawn)} figures saved under figures/, {len(figures)} shown on the page"
    )
    # and none of them is blank: each PNG has more than one colour
    from PIL import Image

    for path in (demo_report.parent / "figures").glob("*.png"):
        with Image.open(path) as image:
            colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
        assert colours is None or len(colours) > 1, f"{path.name} is blank"
