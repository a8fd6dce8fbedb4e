"""``gptir view`` pages in a real browser: headless Chromium driven by selenium (tests/chromium.py).

No console errors; expanding a collapsed scope shows its nodes; → on a pass dump highlights exactly the
nodes ``gptir diff`` reports for that step; a screenshot is taken at a fixed size. Skips, saying why,
only where no browser can be had (`.ci/run` installs Debian's chromium and chromium-driver).
"""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import pytest

import chromium
from gptir.cli import main

WHY = chromium.why_not()
pytestmark = pytest.mark.skipif(WHY is not None, reason=f"no browser: {WHY}")
WIDTH, HEIGHT = 1200, 800


@pytest.fixture(scope="module")
def browser():
    driver, profile = chromium.launch(WIDTH, HEIGHT)
    try:
        yield driver
    finally:
        chromium.close(driver, profile)


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("pages")
    assert main(["trace", "microgpt", "-o", str(d / "loss.ir")]) == 0
    assert main(["opt", str(d / "loss.ir"), "--dump-dir", str(d / "passes"), "-o", str(d / "loss.opt.ir")]) == 0
    assert main(["view", str(d / "passes"), "-o", str(d / "passes.html")]) == 0
    assert main(["trace", "microgpt", "--train-step", "--n-layer", "3", "-o", str(d / "big.ir")]) == 0
    assert main(["view", str(d / "big.ir"), "-o", str(d / "big.html")]) == 0
    assert main(["train", "--steps", "20", "--log", str(d / "run.jsonl"), "--quiet", "--samples", "2"]) == 0
    assert main(["view", str(d / "run.jsonl"), "-o", str(d / "run.html")]) == 0
    return d


def open_page(driver, path: Path) -> None:
    driver.get(path.resolve().as_uri())
    for _ in range(100):
        if driver.execute_script("return !!window.gptirView || document.body.dataset.kind === 'loss'"):
            return
        time.sleep(0.05)
    raise AssertionError(f"{path.name}: the viewer did not start")


def rendered(driver, elements) -> list[bool]:
    """Whether each element is rendered (no ancestor hides it; it may lie outside the current view)."""
    return driver.execute_script("return arguments[0].map(e => e.getClientRects().length > 0)", elements)


def reported(folder: Path, a: str, b: str, capsys) -> set[str]:
    capsys.readouterr()
    main(["diff", "--format", "json", str(folder / a), str(folder / b)])
    rep = json.loads(capsys.readouterr().out)
    return ({n["name"] for n in rep["added"]} | {n["name"] for n in rep["removed"]}
            | {c["b"]["name"] for c in rep["changed"]} | {v["b"] for v in rep["values"]})


def test_pages_load_without_console_errors(browser, pages):
    for name in ("passes.html", "big.html", "run.html"):
        open_page(browser, pages / name)
        assert chromium.errors(browser) == [], name
    assert browser.execute_script("return document.querySelectorAll('polyline.loss').length") == 1


def test_expanding_a_scope_shows_its_nodes(browser, pages):
    from selenium.webdriver.common.by import By

    open_page(browser, pages / "big.html")
    scope = browser.find_element(By.CSS_SELECTOR, ".page:not([hidden]) .scope.collapsed")
    name, count = scope.get_attribute("data-scope"), int(scope.get_attribute("data-count"))
    assert not any(rendered(browser, scope.find_elements(By.CSS_SELECTOR, ".node")))
    scope.find_element(By.CSS_SELECTOR, ":scope > .big-label").click()
    assert "collapsed" not in scope.get_attribute("class").split(), name
    members = scope.find_elements(By.CSS_SELECTOR, ".node")
    assert len(members) == count and all(rendered(browser, members))
    # and the scope label folds it again
    scope.find_element(By.CSS_SELECTOR, ":scope > .scope-label").click()
    assert not any(rendered(browser, members))
    # clicking a node shows its details
    browser.execute_script("gptirView.open(arguments[0])", scope)
    browser.execute_script("arguments[0].scrollIntoView()", members[0])
    browser.execute_script("arguments[0].dispatchEvent(new MouseEvent('click', {bubbles: true}))", members[0])
    info = browser.find_element(By.ID, "info").text
    assert members[0].get_attribute("data-name") in info and "type" in info
    assert chromium.errors(browser) == []


def test_arrow_key_steps_to_the_diff_gptir_diff_reports(browser, pages, capsys):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    folder = pages / "passes"
    files = sorted(p.name for p in folder.iterdir())
    open_page(browser, pages / "passes.html")
    body = browser.find_element(By.TAG_NAME, "body")
    assert browser.execute_script("return gptirView.current()") == 0
    for i in range(1, len(files)):
        body.send_keys(Keys.ARROW_RIGHT)
        assert browser.execute_script("return gptirView.current()") == i
        want = reported(folder, files[i - 1], files[i], capsys)
        page = browser.find_element(By.CSS_SELECTOR, f'.page[data-index="{i}"]')
        shown = page.find_elements(By.CSS_SELECTOR, ".node.hl")
        assert {e.get_attribute("data-name") for e in shown} == want, files[i]
        assert all(rendered(browser, shown))
        assert files[i] in browser.find_element(By.ID, "title").text
    body.send_keys(Keys.ARROW_LEFT)
    assert browser.execute_script("return gptirView.current()") == len(files) - 2
    assert chromium.errors(browser) == []


def test_screenshot_has_the_fixed_size(browser, pages, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    open_page(browser, pages / "passes.html")
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ARROW_RIGHT)
    png = tmp_path / "step.png"
    assert browser.save_screenshot(str(png))
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    inner = browser.execute_script("return [window.innerWidth, window.innerHeight]")
    assert (width, height) == tuple(inner) and width == WIDTH


def test_search_finds_nodes_inside_folded_scopes(browser, pages):
    from selenium.webdriver.common.by import By

    open_page(browser, pages / "big.html")
    box = browser.find_element(By.ID, "search")
    box.send_keys("layer2.attn.matmul")
    hits = browser.find_elements(By.CSS_SELECTOR, ".page:not([hidden]) .node.found")
    assert hits and all(rendered(browser, hits))
    assert all("layer2.attn.matmul" in h.get_attribute("data-name") for h in hits)
    assert browser.find_element(By.ID, "found").text == f"{len(hits)} found"
    assert chromium.errors(browser) == []
