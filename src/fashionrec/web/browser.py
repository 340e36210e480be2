"""Headless Chromium driven by Selenium, for the gallery's browser tests and its screenshot (docs/make_screenshot.py).

Debian's ``chromium`` and ``chromium-driver`` (``make test-tools`` installs them); Selenium comes with the ``dev``
extra. Selenium is imported when a browser starts, so that the gallery itself never needs it.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CHROMIUM = "chromium"  # Debian's package and program name
CHROMEDRIVER = "chromedriver"  # from Debian's chromium-driver
WINDOW_SIZE = (1400, 1000)


class BrowserMissing(RuntimeError):
    """Chromium, its driver or Selenium is not installed; the message says how to install it."""


def _program(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BrowserMissing(f"{name} not found: `make test-tools` installs Debian's chromium and chromium-driver")
    return path


@contextlib.contextmanager
def headless_chromium(profile_dir: Path, window_size: tuple[int, int] = WINDOW_SIZE) -> Iterator[Any]:
    """A Selenium WebDriver of a headless Chromium with its profile in ``profile_dir``, quit when the block ends.
    Nothing is downloaded: the system's browser and driver are named explicitly (no Selenium Manager)."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as exc:
        raise BrowserMissing("selenium is not installed: pip install -e '.[dev]'") from exc
    options = webdriver.ChromeOptions()
    options.binary_location = _program(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",  # root in a container has no user namespace for the sandbox
        "--disable-dev-shm-usage",  # small /dev/shm in containers
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",  # no update checks or field trials: the page must work offline
        "--hide-scrollbars",
        f"--user-data-dir={profile_dir}",
        f"--window-size={window_size[0]},{window_size[1]}",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(_program(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()
