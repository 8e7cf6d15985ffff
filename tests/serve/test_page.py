"""The upload page in a real headless Chromium (Debian's ``chromium``, driven by Playwright for Python).

The browser is the system's: ``apt-get install chromium`` (or ``$IMGCLS_CHROMIUM`` naming another binary),
never a browser download by ``playwright install``. Without Playwright or a browser the test skips, saying so.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest

from imgcls.predict import predict

from .conftest import Running

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="Playwright for Python is not installed: pip install -e '.[serve-test]'"
)


def _chromium() -> str | None:
    for candidate in (os.environ.get("IMGCLS_CHROMIUM"), "chromium", "chromium-browser"):
        found = candidate and shutil.which(candidate)
        if found:
            return found
    return None


def test_upload_an_image_and_read_the_top_1(server: Running, run_dir: Path, tmp_path: Path) -> None:
    browser_path = _chromium()
    if browser_path is None:
        pytest.skip("no Chromium binary: apt-get install chromium (or set IMGCLS_CHROMIUM to one)")
    from PIL import Image

    picture = tmp_path / "sample.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(picture)
    (want,) = predict(run_dir, [picture], top_k=5)

    requested: list[str] = []
    with sync_api.sync_playwright() as pw:
        try:
            browser = pw.chromium.launch(executable_path=browser_path, headless=True)
        except sync_api.Error as e:
            pytest.skip(
                f"Chromium at {browser_path} does not start under Playwright: {str(e).splitlines()[0]}"
            )
        try:
            page = browser.new_page()
            page.on("request", lambda request: requested.append(request.url))
            # Anything addressed elsewhere is aborted as well as recorded: the test never reaches out.
            page.route(
                "**/*",
                lambda route: (
                    route.continue_()
                    if urlsplit(route.request.url).hostname == "127.0.0.1"
                    else route.abort()
                ),
            )
            page.goto(f"{server.url}/")
            # A selector, not wait_for_function("..."): Playwright evaluates a string predicate with eval(),
            # which the page's Content-Security-Policy (default-src 'self') rightly refuses (Playwright 1.65).
            page.wait_for_selector("#model:not(:empty)")
            page.set_input_files("#file", str(picture))
            page.wait_for_selector("body[data-state=done]", timeout=20_000)
            top1 = page.inner_text("#top1")
            bars = page.locator("#bars li").count()
            shot = tmp_path / "page.png"
            page.screenshot(path=str(shot), full_page=True)
            if os.environ.get("IMGCLS_SCREENSHOT"):  # keep a copy to look at
                shutil.copy(shot, os.environ["IMGCLS_SCREENSHOT"])
        finally:
            browser.close()

    assert top1 == want.top[0][0]
    assert bars == 5
    assert shot.stat().st_size > 1000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert requested, "the browser made no request"
    outside = [
        u
        for u in requested
        if urlsplit(u).scheme in ("http", "https", "ws", "wss") and urlsplit(u).hostname != "127.0.0.1"
    ]
    assert outside == [], f"requests left 127.0.0.1: {outside}"
    assert all(urlsplit(u).scheme in ("http", "blob", "data") for u in requested), requested
