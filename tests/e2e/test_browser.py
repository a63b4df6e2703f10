"""End to end in a real headless Chromium: predict from an upload, read the evaluation, train a tiny run to the
end, and every page on a phone-sized screen.

The app runs as students meet it (`streamlit run` on a free loopback port, its own copy of the runs), driven by
Debian's Chromium through Playwright (scripts/ensure_browser.sh installs it when missing). Screenshots of every
page go to test-artifacts/. The fixtures live here rather than in a conftest.py, whose module name would shadow
tests/conftest.py for tests that import helpers from it."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def e2e_root(app_root, tmp_path_factory) -> Path:
    """A private copy of the app's runs: the browser tests train into it."""
    root = tmp_path_factory.mktemp("e2e") / "checkpoints"
    shutil.copytree(app_root, root)
    return root


@pytest.fixture(scope="session")
def server(e2e_root) -> Iterator[str]:
    ARTIFACTS.mkdir(exist_ok=True)
    port = free_port()
    env = dict(os.environ, CNN_CHECKPOINTS=str(e2e_root), PYTHONPATH=str(ROOT))
    with open(ARTIFACTS / "e2e-server.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port",
                                 str(port), "--server.address", "127.0.0.1", "--server.headless", "true"],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"streamlit did not start; see {ARTIFACTS / 'e2e-server.log'}")
            time.sleep(0.3)
        yield url
        proc.terminate()  # the server's exit cancels its training jobs (they stop at a batch)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def browser():
    subprocess.run(["bash", str(ROOT / "scripts" / "ensure_browser.sh")], check=True)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    ctx = browser.new_context(viewport=DESKTOP)
    pg = ctx.new_page()
    pg.set_default_timeout(60_000)
    yield pg
    ctx.close()


@pytest.fixture
def phone(browser):
    ctx = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=2)
    pg = ctx.new_page()
    pg.set_default_timeout(60_000)
    yield pg
    ctx.close()


pytestmark = [pytest.mark.e2e, pytest.mark.slow]
PAGES = ["", "train", "evaluate", "predict", "compare", "sweep", "runs"]


def settle(pg, timeout: float = 120_000) -> None:
    """Wait until the script run is over (the app's own run-state attribute) and nothing is greyed out."""
    pg.wait_for_selector('[data-testid="stApp"]')
    pg.wait_for_timeout(300)
    pg.wait_for_function("""() => {
        const app = document.querySelector('[data-testid="stApp"]');
        return app && app.getAttribute('data-test-script-state') === 'notRunning'
            && !document.querySelector('[data-stale="true"], [data-testid="stSkeleton"]');
    }""", timeout=timeout)
    pg.wait_for_timeout(500)  # charts draw after the run ends


def shoot(pg, name: str) -> Path:
    """The whole page (Streamlit scrolls inside its main block, so the window is made as tall as the content)."""
    size = pg.viewport_size
    height = pg.evaluate("""() => Math.max(...[...document.querySelectorAll(
        '[data-testid="stMain"], [data-testid="stMainBlockContainer"]')].map(e => e.scrollHeight))""")
    pg.set_viewport_size({"width": size["width"], "height": min(max(size["height"], height + 40), 8000)})
    pg.wait_for_function("() => !document.querySelector('[data-testid=\"stSkeleton\"]')", timeout=60_000)
    pg.wait_for_timeout(600)  # widgets' code loads on first use; charts redraw at the new size
    path = ARTIFACTS / f"{name}-{size['width']}.png"
    pg.screenshot(path=path)
    pg.set_viewport_size(size)
    return path


def no_error_boxes(pg) -> None:
    assert pg.locator('[data-testid="stException"]').count() == 0


def digit_file(tmp_path: Path) -> Path:
    from sklearn.datasets import load_digits

    d = load_digits()
    im = Image.fromarray(np.round(d.images[0] * (255 / 16)).astype(np.uint8), "L").resize((96, 96))
    path = tmp_path / "digit.png"
    im.save(path)
    return path


def test_home_links_to_the_pages(server, page):
    page.goto(server)
    settle(page)
    assert page.get_by_role("heading", name="CNN classroom lab").is_visible()
    assert page.get_by_text("3 runs ready to evaluate and predict with").is_visible()  # the table itself is a canvas
    shoot(page, "home")
    page.locator('[data-testid="stSidebarNav"]').get_by_text("Predict").click()
    page.wait_for_url(f"{server}/predict")
    settle(page)
    assert page.get_by_role("heading", name="Predict").is_visible()
    no_error_boxes(page)


def test_predict_an_uploaded_photo(server, page, tmp_path):
    page.goto(f"{server}/predict")
    settle(page)
    bad = tmp_path / "holiday.jpg"
    bad.write_text("not a photo")
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files([digit_file(tmp_path), bad])
    page.get_by_text("what the model sees (32x32)").wait_for()
    settle(page)
    heading = page.get_by_role("heading", level=3).filter(has_text="%").first.inner_text()
    label, prob = heading.split(" · ")
    assert label in [str(i) for i in range(10)] and 0 < float(prob.rstrip("%")) <= 100
    assert page.locator('[data-testid="stVegaLiteChart"]').count() == 1  # the probability bars
    assert page.get_by_text("holiday.jpg: not an image file this app can read").is_visible()
    no_error_boxes(page)
    shoot(page, "predict")


def test_evaluate_shows_the_confusion_matrix_and_table(server, page):
    page.goto(f"{server}/evaluate")
    settle(page)
    assert page.get_by_text("Accuracy", exact=True).is_visible()
    matrix = page.locator('[data-testid="stVegaLiteChart"]').first
    matrix.wait_for()
    box = matrix.bounding_box()
    assert box["width"] > 200 and box["height"] > 200
    table = page.locator('[data-testid="stDataFrame"]').first
    assert table.is_visible()
    assert page.get_by_role("heading", name="Per class").is_visible()
    # click a cell: find one by its tooltip, then its images are listed below
    matrix.scroll_into_view_if_needed()
    box = matrix.bounding_box()
    x, y = box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.6
    page.mouse.move(x, y)
    page.locator("#vg-tooltip-element").wait_for(state="visible")
    tip = re.search(r"true\s+(\S+)\s+predicted\s+(\S+)", page.locator("#vg-tooltip-element").inner_text())
    assert tip, "no tooltip over the matrix"
    page.mouse.click(x, y)
    page.get_by_text(f"image(s) of {tip[1]} predicted as {tip[2]}").wait_for()
    settle(page)
    no_error_boxes(page)
    shoot(page, "evaluate")


def test_train_a_tiny_run_and_see_it_finish(server, page):
    page.goto(f"{server}/train")
    settle(page)
    page.locator('[data-testid="stSelectbox"]').filter(has_text="Dataset").click()
    page.get_by_role("option").filter(has_text="digits —").first.click()
    settle(page)
    for label, value in (("Epochs", "2"), ("Batch size", "64")):
        box = page.get_by_role("spinbutton", name=label, exact=True)
        box.fill(value)
        box.press("Enter")
        settle(page)
    page.get_by_text("More options").click()
    box = page.get_by_role("spinbutton", name="Batches per epoch at most (0 = all)")
    box.fill("3")
    box.press("Enter")
    settle(page)
    name = page.get_by_role("textbox", name="Run name (optional)")
    name.fill("browser-run")
    name.press("Enter")
    settle(page)
    shoot(page, "train-form")
    page.get_by_role("button", name="Start training").click()
    page.locator('[data-testid="stProgress"]').first.wait_for()  # the live panel, polled by a fragment
    shoot(page, "train-running")
    page.get_by_text("Finished: training").wait_for(timeout=240_000)
    settle(page)
    assert page.get_by_text("Test accuracy").is_visible()
    assert page.locator('[data-testid="stVegaLiteChart"]').count() >= 2  # loss and accuracy curves
    no_error_boxes(page)
    shoot(page, "train-finished")
    page.reload()  # a reopened page still shows the job
    settle(page)
    assert page.get_by_text("browser-run").first.is_visible()


@pytest.mark.parametrize("path", PAGES)
def test_every_page_fits_a_phone(server, phone, path):
    phone.goto(f"{server}/{path}")
    settle(phone)
    no_error_boxes(phone)
    overflow = phone.evaluate("""() => [...document.querySelectorAll('[data-testid="stMainBlockContainer"] *')]
        .filter(e => e.getBoundingClientRect().right > window.innerWidth + 2 && e.offsetParent !== null
                     && !e.closest('[data-testid="stDataFrame"], [data-testid="stTable"]')
                     && !e.matches('input[type="range"]'))  // a slider's invisible native input
        .map(e => e.getAttribute('data-testid') || e.tagName).slice(0, 5)""")
    assert overflow == [], f"sticks out of a 390 px screen: {overflow}"
    assert phone.evaluate("""() => { const m = document.querySelector('[data-testid="stMain"]');
                                    return m.scrollWidth <= m.clientWidth + 1; }"""), "the page scrolls sideways"
    shoot(phone, path or "home")
