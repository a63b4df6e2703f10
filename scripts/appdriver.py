"""Start the app as students meet it and drive it in Debian's Chromium through Playwright.

Shared by the browser tests (tests/e2e/) and scripts/loadtest.py, so both start the server, wait for a page and
fill in the Train form the same way.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(runs: Path, log: Path, start_timeout: float = 90) -> Iterator[str]:
    """The app on a free loopback port over the runs in ``runs``; yields its URL. Stopping the server
    cancels its training jobs (they stop at a batch and keep last.pt)."""
    port = free_port()
    env = dict(os.environ, CNN_CHECKPOINTS=str(runs), PYTHONPATH=str(ROOT))
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        # started as `make run` starts it (scripts/serve.py: the pages' imports done before the server answers)
        proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "serve.py"), "--port", str(port), "--",
                                 "--server.address", "127.0.0.1", "--server.headless", "true"],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + start_timeout
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"streamlit did not start; see {log}")
                time.sleep(0.3)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def launch_chromium(playwright):
    """Debian's Chromium, headless (scripts/ensure_browser.sh installs it when it is missing)."""
    subprocess.run(["bash", str(ROOT / "scripts" / "ensure_browser.sh")], check=True, stdout=subprocess.DEVNULL)
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


def settle(pg, timeout: float = 120_000) -> None:
    """Wait until the script run is over (the app's own run-state attribute) and nothing is greyed out."""
    pg.wait_for_selector('[data-testid="stApp"]', timeout=timeout)
    pg.wait_for_timeout(300)
    pg.wait_for_function("""() => {
        const app = document.querySelector('[data-testid="stApp"]');
        return app && app.getAttribute('data-test-script-state') === 'notRunning'
            && !document.querySelector('[data-stale="true"], [data-testid="stSkeleton"]');
    }""", timeout=timeout)
    pg.wait_for_timeout(500)  # charts draw after the run ends


def choose(pg, label: str, option: str, timeout: float = 60_000) -> None:
    """Pick the first option containing ``option`` in the selectbox labelled ``label``. A click can land while
    charts above it are still drawing and move it, so the dropdown is opened again until its options show."""
    box = pg.locator('[data-testid="stSelectbox"]').filter(has_text=label)
    choice = pg.get_by_role("option").filter(has_text=option).first
    deadline = time.monotonic() + timeout / 1000
    while True:
        box.click(timeout=timeout)
        try:
            choice.wait_for(timeout=3_000)
            break
        except Exception:  # noqa: BLE001 - playwright's TimeoutError: the dropdown did not open
            if time.monotonic() > deadline:
                raise
            pg.keyboard.press("Escape")
    choice.click(timeout=timeout)


def fill_train_form(pg, name: str, epochs: int, batch_size: int = 64, max_batches: int = 0) -> None:
    """On an open Train page: the digits dataset (bundled, no download), the default (smallest) model, these
    options and a run name. Leaves the start button to the caller."""
    choose(pg, "Dataset", "digits —")
    settle(pg)
    for label, value in (("Epochs", epochs), ("Batch size", batch_size)):
        box = pg.get_by_role("spinbutton", name=label, exact=True)
        box.fill(str(value))
        box.press("Enter")
        settle(pg)
    if max_batches:
        pg.get_by_text("More options").click()
        box = pg.get_by_role("spinbutton", name="Batches per epoch at most (0 = all)")
        box.fill(str(max_batches))
        box.press("Enter")
        settle(pg)
    box = pg.get_by_role("textbox", name="Run name (optional)")
    box.fill(name)
    box.press("Enter")
    settle(pg)
