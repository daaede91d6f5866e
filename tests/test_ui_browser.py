"""The web app in a real browser: Debian's chromium, driven by selenium through chromium-driver.

Opens the page, uploads a ShapeWorld clip, types an instruction, presses Edit and waits for the
edited video element to get a ``src``; saves a screenshot under the test's tmp folder (and, when
``EVEDIT_UI_SCREENSHOT`` names a path, there too: that is how ``results/ui_screenshot.png`` was
made). Skipped, saying how to install them, when chromium or chromedriver is missing.
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest

pytest.importorskip("gradio")
selenium = pytest.importorskip("selenium", reason="selenium is missing: pip install -r requirements.txt")

from evedit.io import write_video  # noqa: E402
from evedit.world import WorldConfig, make_example  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER),
    reason="chromium and chromedriver are missing: install them with `apt-get install chromium chromium-driver`",
)
WAIT = 180  # seconds; generous for a loaded CI machine (never a timing assertion)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    from evedit.ui import launch

    srv = launch("shapeworld", "127.0.0.1", _free_port())
    yield srv
    srv.close()


@pytest.fixture()
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1500", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    yield driver
    driver.quit()


def test_upload_type_edit_and_see_the_edited_video(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    example = make_example(5, "color", WorldConfig(size=64, frames=8))
    clip = write_video(tmp_path / "shapes.mp4", example.clip, 8.0)
    wait = WebDriverWait(browser, WAIT)
    browser.get(server.url)
    upload = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#upload input[type=file]")))
    upload.send_keys(str(clip))
    wait.until(lambda d: "shapes" in d.find_element(By.ID, "upload").text)
    box = browser.find_element(By.CSS_SELECTOR, "#instruction textarea")
    box.clear()
    box.send_keys(example.edit.instruction)
    browser.find_element(By.ID, "edit-button").click()
    video = wait.until(lambda d: _video_with_src(d, "#edited video") or _error_shown(d))
    assert video != "error", f"the page shows an error: {browser.find_element(By.TAG_NAME, 'body').text[-300:]}"
    assert video.get_attribute("src")
    _video_with_src(browser, "#comparison video")
    shot = tmp_path / "ui.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 0
    if os.environ.get("EVEDIT_UI_SCREENSHOT"):
        target = Path(os.environ["EVEDIT_UI_SCREENSHOT"])
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, target)


def _video_with_src(driver, selector: str):
    """The first element matching ``selector`` once it has a non-empty ``src`` (else False)."""
    from selenium.webdriver.common.by import By

    for element in driver.find_elements(By.CSS_SELECTOR, selector):
        if element.get_attribute("src"):
            return element
    return False


def _error_shown(driver):
    """``"error"`` once the edited-video box shows an error (so a failing edit fails fast)."""
    from selenium.webdriver.common.by import By

    return "error" if "Error" in driver.find_element(By.ID, "edited").text else False
