"""The web page of ``isnet serve`` in a real headless Chromium: upload an image, see the overlay and the legend.

Needs Debian's ``chromium`` and ``chromium-driver`` (``apt-get install -y chromium chromium-driver``)
and selenium (in the ``test`` extra); skipped, saying so, where the browser cannot be found.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="isnet serve needs the serve extra: pip install -e '.[serve]'")
webdriver = pytest.importorskip("selenium.webdriver", reason="the page test drives Chromium with selenium (test extra)")

from serve_helpers import REPO, predict_classes, tiny_checkpoint  # noqa: E402

from isnet.apps.serve.client import running_server  # noqa: E402

CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
CHROMEDRIVER = shutil.which("chromedriver")
SCREENSHOT = Path(os.environ.get("ISNET_SERVE_SCREENSHOT", "/tmp/serve_page.png"))
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="no chromium / chromedriver on PATH: apt-get install -y chromium chromium-driver (as root)",
)


@pytest.fixture
def browser():
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1100,800"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def test_page_shows_the_overlay_and_a_legend_of_the_model_classes(browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    checkpoint = tiny_checkpoint(tmp_path / "tiny.safetensors")
    with running_server(checkpoint, log=tmp_path / "server.log") as server:
        browser.get(server.url + "/")
        browser.find_element(By.ID, "file").send_keys(str(REPO / "src" / "isnet" / "assets" / "sample.jpg"))
        overlay = browser.find_element(By.ID, "overlay")
        WebDriverWait(browser, 120).until(
            lambda driver: driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", overlay)
            or "error" in driver.find_element(By.ID, "status").get_attribute("class")
        )
        status = browser.find_element(By.ID, "status").text
        assert browser.execute_script("return arguments[0].naturalWidth", overlay) == 320, status
        assert overlay.is_displayed() and "sample.jpg: done" in status
        legend = browser.find_elements(By.CSS_SELECTOR, "#legend tbody tr")
        names = [row.find_elements(By.TAG_NAME, "td")[1].text for row in legend]
        assert sorted(names) == sorted(predict_classes(checkpoint))
        areas = [float(row.find_elements(By.TAG_NAME, "td")[2].text.rstrip(" %")) for row in legend]
        assert sum(areas) == pytest.approx(100, abs=0.5) and areas == sorted(areas, reverse=True)
        browser.save_screenshot(str(SCREENSHOT))
