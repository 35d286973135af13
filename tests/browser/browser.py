"""Debian's headless chromium driven through selenium, with no download at run time, and
screenshot checks (the PNG has the viewport's size and is not one flat colour)."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from PIL import Image
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = os.environ.get("I2V_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("I2V_CHROMEDRIVER", "/usr/bin/chromedriver")
WINDOW = (1280, 1500)
T = TypeVar("T")


def start_chromium(download_dir: Path) -> webdriver.Chrome:
    """Headless chromium downloading into `download_dir`; skips the test when it is not installed."""
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.skip("chromium and chromedriver not installed (scripts/setup.sh installs them)")
    os.environ["SE_OFFLINE"] = "true"  # selenium-manager must not fetch a browser or a driver
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        f"--window-size={WINDOW[0]},{WINDOW[1]}", "--autoplay-policy=no-user-gesture-required",
        "--no-first-run", "--disable-extensions", "--disable-background-networking",
    ):  # fmt: skip
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(download_dir), "download.prompt_for_download": False}
    )
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(download_dir)}
    )
    return driver


def wait_for(driver: webdriver.Chrome, what: Callable[[webdriver.Chrome], T], timeout: float = 30) -> T:
    """`what(driver)` once it is truthy, failing with the page's visible errors otherwise."""
    try:
        # a table redrawn by its refresh leaves stale references: try again
        wait = WebDriverWait(
            driver, timeout, poll_frequency=0.05, ignored_exceptions=[StaleElementReferenceException]
        )
        result: T = wait.until(what)
    except Exception as exc:
        raise AssertionError(
            f"timed out after {timeout} s; page errors: {page_errors(driver)}; console: {console(driver)}"
        ) from exc
    return result


def by_id(driver: webdriver.Chrome, element_id: str) -> WebElement:
    return driver.find_element(By.ID, element_id)


def by_label(driver: webdriver.Chrome, text: str) -> WebElement:
    """The control a <label> with exactly this text names (how a person finds it)."""
    label = driver.find_element(By.XPATH, f"//label[normalize-space()={text!r}]")
    return driver.find_element(By.ID, label.get_attribute("for") or "")


def text(driver: webdriver.Chrome, element_id: str) -> str:
    return str(driver.execute_script("return document.getElementById(arguments[0]).textContent", element_id))


def page_errors(driver: webdriver.Chrome) -> dict[str, str]:
    script = (
        "const out = {}; for (const e of document.querySelectorAll('.error'))"
        " if (!e.hidden) out[e.id] = e.textContent; return out"
    )
    try:
        errors: dict[str, str] = driver.execute_script(script)
    except Exception as exc:  # the page itself may be gone
        return {"page": repr(exc)}
    return errors


def console(driver: webdriver.Chrome) -> list[str]:
    """The browser console's messages since the last call (script errors among them)."""
    try:
        return [str(entry.get("message")) for entry in driver.get_log("browser")]
    except Exception as exc:
        return [repr(exc)]


def js(driver: webdriver.Chrome, script: str, *args: Any) -> Any:
    return driver.execute_script(script, *args)


def screenshot(driver: webdriver.Chrome, path: Path) -> Path:
    """Saves the viewport and checks it: a PNG of the viewport's device pixels, not one flat colour."""
    assert driver.save_screenshot(str(path)), f"no screenshot written to {path}"
    width, height, ratio = js(driver, "return [innerWidth, innerHeight, devicePixelRatio]")
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == (round(width * ratio), round(height * ratio)), (image.size, width, height, ratio)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
    # None: more than 65,536 colours; a page with text, a preview and a video has hundreds at least
    assert colours is None or len(colours) >= 50, f"{path} looks blank: {len(colours)} colours"
    return path


def wait_file(path: Path, timeout: float = 20) -> Path:
    """`path` once chromium has finished downloading it."""
    deadline = time.monotonic() + timeout
    partial = path.with_name(path.name + ".crdownload")
    while time.monotonic() < deadline:
        if path.exists() and not partial.exists():
            return path
        time.sleep(0.05)
    raise AssertionError(f"{path.name} not downloaded into {path.parent}: {sorted(os.listdir(path.parent))}")
