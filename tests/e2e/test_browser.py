"""End to end in a real headless Chromium: predict from an upload, read the evaluation, train a tiny run to the
end, two sessions asking to train at once, and every page on a phone-sized screen.

The app runs as students meet it (`streamlit run` on a free loopback port, its own copy of the runs), driven by
Debian's Chromium through Playwright; scripts/appdriver.py starts both (scripts/loadtest.py uses it too).
Screenshots of every page go to test-artifacts/. The fixtures live here rather than in a conftest.py, whose module
name would shadow tests/conftest.py for tests that import helpers from it."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnn_core.evaluation.predictor import Predictor
from cnn_core.runs.rundir import RunDir
from scripts.appdriver import ARTIFACTS, ROOT, choose, fill_train_form, launch_chromium, serve, settle

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="session")
def e2e_root(app_root, tmp_path_factory) -> Path:
    """A private copy of the app's runs: the browser tests train into it."""
    root = tmp_path_factory.mktemp("e2e") / "checkpoints"
    shutil.copytree(app_root, root)
    return root


@pytest.fixture(scope="session")
def server(e2e_root) -> Iterator[str]:
    with serve(e2e_root, ARTIFACTS / "e2e-server.log") as url:
        yield url


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = launch_chromium(p)
        yield b
        b.close()


def new_page(browser, **context):
    pg = browser.new_context(**context).new_page()
    pg.set_default_timeout(60_000)
    return pg


@pytest.fixture
def page(browser):
    pg = new_page(browser, viewport=DESKTOP)
    yield pg
    pg.context.close()


@pytest.fixture
def phone(browser):
    pg = new_page(browser, viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=2)
    yield pg
    pg.context.close()


pytestmark = [pytest.mark.e2e, pytest.mark.slow]
PAGES = ["", "train", "data", "evaluate", "predict", "compare", "sweep", "runs"]


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
    page.get_by_text("what the model sees (32x32").first.wait_for()  # digits: ", the digit found and centred)"
    settle(page)
    heading = page.get_by_role("heading", level=3).filter(has_text="%").first.inner_text()
    label, prob = heading.split(" · ")
    assert label in [str(i) for i in range(10)] and 0 < float(prob.rstrip("%")) <= 100
    assert page.locator('[data-testid="stVegaLiteChart"]').first.is_visible()  # the probability bars
    assert page.get_by_text("holiday.jpg: not an image file this app can read").is_visible()
    no_error_boxes(page)
    shoot(page, "predict")


def test_evaluate_shows_the_confusion_matrix_and_table(server, page):
    page.goto(f"{server}/evaluate")
    page.get_by_role("heading", name="Evaluate").wait_for()  # a fresh server's first visit goes via the router
    settle(page)
    assert page.get_by_text("Accuracy", exact=True).is_visible()
    matrix = page.locator('[data-testid="stVegaLiteChart"]').first
    matrix.wait_for()
    box = matrix.bounding_box()
    assert box["width"] > 200 and box["height"] > 200
    table = page.locator('[data-testid="stDataFrame"]').first
    assert table.is_visible()
    assert page.get_by_role("heading", name="Per class").is_visible()
    click_a_cell(page, matrix).wait_for()
    settle(page)
    no_error_boxes(page)
    shoot(page, "evaluate")


def click_a_cell(pg, matrix):
    """Click a cell of the confusion matrix, found by its tooltip; returns the caption of its images."""
    matrix.scroll_into_view_if_needed()
    box = matrix.bounding_box()
    x, y = box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.6
    pg.mouse.move(x, y)
    pg.locator("#vg-tooltip-element").wait_for(state="visible")
    tip = re.search(r"true\s+(\S+)\s+predicted\s+(\S+)", pg.locator("#vg-tooltip-element").inner_text())
    assert tip, "no tooltip over the matrix"
    pg.mouse.click(x, y)
    return pg.get_by_text(f"image(s) of {tip[1]} predicted as {tip[2]}")


def test_train_a_tiny_run_and_see_it_finish(server, page):
    page.goto(f"{server}/train")
    settle(page)
    fill_train_form(page, "browser-run", epochs=2, batch_size=64, max_batches=3)
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


def job_state(pg, run: str, state: str = "", timeout: float = 60_000) -> str:
    """Wait for the job panel's heading for ``run`` (in ``state`` when given: Running, Queued, Finished) and
    return that state."""
    heading = pg.locator("h4").filter(has_text=re.compile(rf"{state or '[A-Z][a-z]+'}: \w+ {run} on "))
    heading.wait_for(timeout=timeout)
    return re.search(r"([A-Z][a-z]+): \w+ " + run, heading.inner_text())[1]


def finished_intact(run_dir: Path, epochs: int) -> None:
    assert RunDir(run_dir).info().state == "finished"
    assert [int(r["epoch"]) for r in RunDir(run_dir).metrics()] == list(range(1, epochs + 1))
    assert Predictor.from_run(run_dir).classes == [str(i) for i in range(10)]  # best.pt loads and builds


def test_two_sessions_ask_to_train_at_once(server, browser, e2e_root):
    """One job runs, the other waits in the queue with its position shown; the first finishes with its files
    intact, then the second starts by itself and finishes too."""
    names = ["race-a", "race-b"]
    pages = [new_page(browser, viewport=DESKTOP) for _ in names]
    try:
        for pg, name in zip(pages, names):
            pg.goto(f"{server}/train")
            settle(pg)
            fill_train_form(pg, name, epochs=3, batch_size=64, max_batches=5)
        for pg in pages:  # both forms were filled while the device was free
            pg.get_by_role("button", name="Start training").click()
        states = [job_state(pg, name) for pg, name in zip(pages, names)]
        assert sorted(states) == ["Queued", "Running"], states
        first = states.index("Running")
        second = 1 - first
        waiting = pages[second]
        assert waiting.get_by_text(f"number 1 in the queue, behind {names[first]}").is_visible()
        shoot(waiting, "train-queued")

        job_state(pages[first], names[first], "Finished", timeout=240_000)
        finished_intact(e2e_root / names[first], epochs=3)
        before = (e2e_root / names[first] / "best.pt").stat().st_mtime_ns
        job_state(waiting, names[second], "Finished", timeout=240_000)
        finished_intact(e2e_root / names[second], epochs=3)
        finished_intact(e2e_root / names[first], epochs=3)  # the second run left the first one alone
        assert (e2e_root / names[first] / "best.pt").stat().st_mtime_ns == before
        for pg in pages:
            no_error_boxes(pg)
    finally:
        for pg in pages:
            pg.context.close()


@pytest.mark.parametrize("path", PAGES)
def test_every_page_fits_a_phone(server, phone, path):
    phone.goto(f"{server}/{path}")
    settle(phone)
    no_error_boxes(phone)
    fits_a_phone(phone)
    shoot(phone, path or "home")


def fits_a_phone(phone) -> None:
    """Nothing sticks out of the 390 px screen (tables scroll inside themselves), and no sideways scrolling."""
    overflow = phone.evaluate("""() => [...document.querySelectorAll('[data-testid="stMainBlockContainer"] *')]
        .filter(e => e.getBoundingClientRect().right > window.innerWidth + 2 && e.offsetParent !== null
                     && !e.closest('[data-testid="stDataFrame"], [data-testid="stTable"]')
                     && !e.matches('input[type="range"]'))  // a slider's invisible native input
        .map(e => e.getAttribute('data-testid') || e.tagName).slice(0, 5)""")
    assert overflow == [], f"sticks out of a 390 px screen: {overflow}"
    assert phone.evaluate("""() => { const m = document.querySelector('[data-testid="stMain"]');
                                    return m.scrollWidth <= m.clientWidth + 1; }"""), "the page scrolls sideways"


def test_the_data_page_on_a_phone_shows_digits_and_shuffles(server, phone):
    """Digits at 390 px: the counts chart, a row of images per class, the augmentation; Shuffle draws others."""
    phone.goto(f"{server}/data")
    settle(phone)
    choose(phone, "Dataset", "digits")
    settle(phone)
    assert phone.get_by_text("8×8").first.is_visible()
    images = phone.locator('[data-testid="stImage"] img')
    assert images.count() == 11  # a row per class and the augmentation
    assert phone.locator('[data-testid="stVegaLiteChart"]').count() == 1
    first = images.first.get_attribute("src")
    phone.get_by_role("button", name="Shuffle").click()
    settle(phone)
    assert images.first.get_attribute("src") != first
    no_error_boxes(phone)
    assert phone.locator('[data-testid="stAlertContentError"]').count() == 0
    assert phone.evaluate("""() => { const m = document.querySelector('[data-testid="stMain"]');
                                    return m.scrollWidth <= m.clientWidth + 1; }"""), "the page scrolls sideways"
    shoot(phone, "data-digits")


def test_the_learning_rate_finder_on_a_phone(server, phone):
    """At 390 px: Find a learning rate runs a real finder job on digits; its curve fits the screen; Use this rate
    puts the suggestion into the Learning rate box."""
    phone.goto(f"{server}/train")
    settle(phone)
    choose(phone, "Dataset", "digits —")
    settle(phone)
    phone.get_by_role("button", name="Find a learning rate").click()
    said = phone.get_by_text(re.compile(r"Suggested learning rate [0-9.e-]+, by the valley rule"))
    said.wait_for(timeout=300_000)
    settle(phone)
    lr = re.search(r"Suggested learning rate ([0-9.e-]+),", said.inner_text())[1]
    assert phone.evaluate("""() => [...document.querySelectorAll('[data-testid="stVegaLiteChart"]')]
        .every(c => c.getBoundingClientRect().right <= window.innerWidth + 2)"""), "a chart sticks out"
    no_error_boxes(phone)
    shoot(phone, "train-lr-find")
    phone.get_by_role("button", name="Use this rate").click()
    settle(phone)
    assert float(phone.get_by_role("spinbutton", name="Learning rate", exact=True).input_value()) == float(lr)


def test_the_first_visitor_who_opens_a_page_directly_gets_it_under_the_router(e2e_root, browser, tmp_path):
    """Until a session has run st.navigation, Streamlit serves pages/ as its old page list; a fresh server's first
    visitor opening /predict still gets the app's navigation (Home, Train, ...) and the Predict page."""
    with serve(e2e_root, ARTIFACTS / "e2e-first-visit.log") as url:  # a server nobody has visited yet
        pg = new_page(browser, viewport=DESKTOP)
        try:
            pg.goto(f"{url}/predict")
            settle(pg)
            pg.get_by_role("heading", name="Predict").wait_for()
            nav = pg.locator('[data-testid="stSidebarNav"]').inner_text()
            assert "Home" in nav and "Train" in nav
            assert "ui" not in nav.split() and "streamlit app" not in nav  # no file-list page names
            assert pg.url.rstrip("/").endswith("/predict")
            no_error_boxes(pg)
        finally:
            pg.context.close()


INJECTIONS = ["[Free exam answers, log in here](https:evil.example)", "![x](https:evil.example)"]


def test_class_names_that_look_like_markdown_are_shown_as_text(browser, tmp_path):
    """Class folders named like a link and an image (a classmate's upload) appear as those characters on Predict
    and Evaluate: no link to click, nothing fetched from another host."""
    from cnn_core.config import TrainConfig
    from cnn_core.workflows.run import train_run

    photos = tmp_path / "photos"
    rng = np.random.default_rng(0)
    for k, name in enumerate(INJECTIONS):
        (photos / name).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8) // (k + 1)).save(
                photos / name / f"{i}.png")
    root = tmp_path / "checkpoints"
    train_run(TrainConfig(model="lenet5", dataset=f"folder:{photos}", epochs=1, batch_size=4), name="inject",
              root=root)
    with serve(root, ARTIFACTS / "e2e-injection.log") as url:
        pg = new_page(browser, viewport=DESKTOP)
        try:
            for path in ("predict", "evaluate"):
                pg.goto(f"{url}/{path}")
                settle(pg)
                # a fresh server's first visit goes through the router: wait for the page itself, then settle
                pg.get_by_role("heading", name=path.capitalize()).wait_for()
                if path == "predict":
                    pg.get_by_text(INJECTIONS[0], exact=False).first.wait_for()
                settle(pg)
                body = pg.locator('[data-testid="stMain"]')
                assert pg.locator('a[href*="evil"]').count() == 0, path
                assert pg.locator('img[src*="evil"]').count() == 0, path
                if path == "predict":  # the caption lists the classes, as typed
                    assert INJECTIONS[0] in body.inner_text() and INJECTIONS[1] in body.inner_text()
                no_error_boxes(pg)
            shoot(pg, "injection-evaluate")
        finally:
            pg.context.close()


def test_an_operator_and_a_visitor_see_what_each_may_do(e2e_root, browser, monkeypatch):
    """Two sessions on one server: the one that opened the operator link may rename, delete and train on a server
    path; the visitor is told in a line what it can do, and has none of those controls."""
    monkeypatch.setenv("CNN_OPERATOR_TOKEN", "class-secret")
    with serve(e2e_root, ARTIFACTS / "e2e-roles.log") as url:
        operator, visitor = new_page(browser, viewport=DESKTOP), new_page(browser, viewport=PHONE)
        try:
            operator.goto(f"{url}/runs?operator=class-secret")
            visitor.goto(f"{url}/runs?operator=guess")
            for pg in (operator, visitor):
                settle(pg)
                pg.get_by_role("heading", name="Runs").wait_for()
                no_error_boxes(pg)
            # the heading can show before the rest of the first run arrives on a loaded host: wait for each
            # session's own last element before counting what the other one must not have
            operator.get_by_role("button", name="Delete for good").wait_for()
            visitor.get_by_text("You are a visitor").wait_for()
            settle(operator)
            settle(visitor)
            assert "operator=" not in operator.url and "operator=" not in visitor.url  # the secret leaves the bar
            assert operator.get_by_role("button", name="Delete for good").count() == 1
            assert visitor.get_by_role("button", name="Delete for good").count() == 0
            assert visitor.get_by_text("You are a visitor").count() == 1
            assert operator.get_by_text("You are a visitor").count() == 0
            shoot(visitor, "roles-visitor-runs")
            sources = {}
            for who, pg in (("operator", operator), ("visitor", visitor)):
                pg.goto(f"{url}/train") if who == "visitor" else pg.get_by_role("link", name="Train").click()
                settle(pg)  # (the operator moves within its session: a reload would be a new, visitor's session)
                pg.get_by_role("heading", name="Train", exact=True).wait_for()
                pg.locator('[data-testid="stSelectbox"]').filter(has_text="Dataset").click()  # open the list
                pg.get_by_role("option").first.wait_for()
                sources[who] = " | ".join(pg.get_by_role("option").all_inner_texts())
                pg.keyboard.press("Escape")
            assert "any path" in sources["operator"] and "upload a zip" in sources["operator"]
            assert "any path" not in sources["visitor"] and "upload a zip" in sources["visitor"]
            assert visitor.get_by_text("You are a visitor").count() == 1
        finally:
            operator.context.close()
            visitor.context.close()


def test_evaluate_a_demo_run_without_the_datasets_and_its_gallery_follows_a_click(browser, tmp_path, monkeypatch):
    """A fresh clone without the course datasets: Evaluate reads the demo run's saved report (accuracy, matrix,
    table), says in one line that the images need the data, and shows no error. On a phone, a clicked cell's
    gallery starts right under the matrix, not below the per-class tables."""
    root = tmp_path / "checkpoints"
    shutil.copytree(Path(__file__).resolve().parents[2] / "checkpoints", root)
    for p in root.rglob("*"):  # a checkout gives every file the time of the checkout
        p.touch()
    empty = tmp_path / "no-data"
    empty.mkdir()
    monkeypatch.setenv("CNN_DATA_DIR", str(empty))
    with serve(root, ARTIFACTS / "e2e-no-data.log") as url:
        for pg in (new_page(browser, viewport=DESKTOP),
                   new_page(browser, viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=2)):
            try:
                pg.goto(f"{url}/evaluate")
                pg.get_by_role("heading", name="Evaluate").wait_for()  # the first visit goes via the router
                settle(pg)
                choose(pg, "Run", "demo-mnist-lenet5")
                settle(pg)
                assert pg.locator('[data-testid="stMetricValue"]').first.inner_text() == "98.9%"
                note = pg.locator('[data-testid="stAlertContentInfo"]')
                assert note.count() == 1 and "No images: dataset mnist is not in" in note.inner_text()
                assert pg.locator('[data-testid="stAlertContentError"]').count() == 0
                no_error_boxes(pg)

                matrix = pg.locator('[data-testid="stVegaLiteChart"]').first
                caption = click_a_cell(pg, matrix)
                caption.wait_for()
                settle(pg)
                box = matrix.bounding_box()
                below = caption.bounding_box()["y"] - (box["y"] + box["height"])
                assert 0 < below < 400, f"the gallery starts {below:.0f} px below the matrix"
                no_error_boxes(pg)
                shoot(pg, "evaluate-no-data")
            finally:
                pg.context.close()


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory) -> Iterator[str]:
    """The app with one committed demo model (CIFAR-10 FastNet): colour photos, four stages to look inside."""
    root = tmp_path_factory.mktemp("demo") / "checkpoints"
    shutil.copytree(ROOT / "checkpoints" / "demo-cifar10-fast", root / "demo-cifar10-fast")
    with serve(root, ARTIFACTS / "e2e-demo-server.log") as url:
        yield url


def test_why_and_inside_the_network_on_a_phone(demo_server, phone, tmp_path):
    """At 390 px on a demo model: Why? shows the heatmap over the photo and over the model's view; a tap on the
    runner-up redraws it for that class; Inside the network shows the input, each stage's maps with its shape,
    the probabilities and the filters; nothing sticks out."""
    photo = tmp_path / "photo.jpg"
    yy, xx = np.mgrid[0:240, 0:320]
    Image.fromarray(np.stack([xx * 255 // 320, yy * 255 // 240, 255 - xx * 255 // 320], -1).astype(np.uint8)).save(
        photo)
    phone.goto(f"{demo_server}/predict")
    settle(phone)
    phone.get_by_role("heading", name="Predict").wait_for()
    phone.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files([photo])
    top = phone.get_by_text(re.compile(r"\(\d+%\): over the photo$"))
    top.wait_for()
    settle(phone)
    first = top.inner_text()
    assert phone.get_by_text("over what the model sees (32x32)").is_visible()
    runner_up = phone.get_by_role("radio", name=re.compile("runner-up"))
    runner_up.click()
    settle(phone)
    second = phone.get_by_text(re.compile(r"\(\d+%\): over the photo$")).inner_text()
    assert second != first and runner_up.inner_text().startswith(second.split(" (")[0] + " (runner-up)")
    phone.get_by_text("Inside the network: what each stage sees").click()
    phone.get_by_text("input 3×32×32").wait_for()
    settle(phone)
    stages = phone.get_by_text(re.compile(r"^\d\. .+: \d+×\d+×\d+$"))
    assert stages.count() == 4 and stages.first.is_visible()
    assert phone.get_by_text("the first layer's filters (gray is zero)").is_visible()
    no_error_boxes(phone)
    fits_a_phone(phone)
    shoot(phone, "predict-why-inside")
