"""Headless Chromium for the browser tests and the README pictures (selenium, explicit driver path).

Debian's ``chromium`` and ``chromium-driver`` work offline; the flags keep Chromium from reaching for
the network (this machine has none: without them it hangs on connections) and a fresh profile folder
keeps runs independent. :func:`why_not` says why no browser can be had, for a test's skip reason.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

DRIVER_CANDIDATES = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")
BROWSER_CANDIDATES = ("/usr/bin/chromium", "/usr/lib/chromium/chromium")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars")


def _first(paths: tuple[str, ...]) -> str | None:
    return next((p for p in paths if os.path.exists(p)), None)


def why_not() -> str | None:
    """None when a browser can be driven here, else the reason."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[browser]')"
    if _first(DRIVER_CANDIDATES) is None:
        return "chromedriver not found (apt-get install chromium chromium-driver)"
    if _first(BROWSER_CANDIDATES) is None:
        return "chromium not found (apt-get install chromium)"
    return None


def launch(width: int = 1200, height: int = 800) -> tuple[Any, str]:
    """A headless Chromium driver with a window of exactly ``width`` x ``height`` and its profile folder
    (remove it after ``driver.quit()``)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="gptir-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = _first(BROWSER_CANDIDATES) or ""
    for flag in FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={profile}")
    opts.add_argument(f"--window-size={width},{height}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        driver = webdriver.Chrome(service=Service(executable_path=_first(DRIVER_CANDIDATES)), options=opts)
    except BaseException:
        shutil.rmtree(profile, ignore_errors=True)
        raise
    driver.set_page_load_timeout(60)
    return driver, profile


def close(driver: Any, profile: str) -> None:
    try:
        driver.quit()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def errors(driver: Any) -> list[str]:
    """The console messages of level SEVERE (errors) since the last call."""
    return [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
