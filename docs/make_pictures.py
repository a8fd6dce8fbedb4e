"""Make the README's pictures: docs/microgpt.png (the microgpt loss graph in ``gptir view``) and
docs/pass-step.png (the stepper over ``gptir opt --dump-dir`` on the cse step), with headless Chromium.

    python docs/make_pictures.py        # needs chromium, chromium-driver and selenium (.[browser])
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

import chromium  # noqa: E402

from gptir.cli import main  # noqa: E402

WIDTH, HEIGHT = 1000, 640


def shoot(driver, page: str, out: str, keys: str = "", zoom_js: str = "") -> None:
    from selenium.webdriver.common.by import By

    driver.get("file://" + os.path.abspath(page))
    time.sleep(0.3)
    if keys:
        driver.find_element(By.TAG_NAME, "body").send_keys(keys)
        time.sleep(0.2)
    if zoom_js:
        driver.execute_script(zoom_js)
        time.sleep(0.2)
    errors = chromium.errors(driver)
    if errors:
        raise SystemExit(f"{page}: console errors: {errors}")
    driver.save_screenshot(out)
    print(f"wrote {os.path.relpath(out)} ({os.path.getsize(out) // 1024} kB)")


def main_() -> int:
    why = chromium.why_not()
    if why:
        raise SystemExit(f"cannot make the pictures: {why}")
    from selenium.webdriver.common.keys import Keys

    start = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # short names in the pages' titles
        loss, passes = "loss.ir", "passes"
        assert main(["trace", "microgpt", "-o", loss]) == 0
        assert main(["opt", loss, "--dump-dir", passes, "-o", os.path.join(tmp, "loss.opt.ir")]) == 0
        assert main(["view", loss, "-o", os.path.join(tmp, "loss.html")]) == 0
        assert main(["view", passes, "-o", os.path.join(tmp, "passes.html")]) == 0
        driver, profile = chromium.launch(WIDTH, HEIGHT)
        try:
            # the loss graph's layer0.attn at a readable scale: click a node so the panel shows it
            shoot(driver, os.path.join(tmp, "loss.html"), os.path.join(HERE, "microgpt.png"),
                  zoom_js="var n=[...document.querySelectorAll('.node')].find(e=>e.dataset.name==='layer0.attn.matmul');"
                          "n.dispatchEvent(new MouseEvent('click',{bubbles:true}));")
            shoot(driver, os.path.join(tmp, "passes.html"), os.path.join(HERE, "pass-step.png"), keys=Keys.ARROW_RIGHT)
        finally:
            chromium.close(driver, profile)
            os.chdir(start)
    return 0


if __name__ == "__main__":
    sys.exit(main_())
