"""What a newcomer waits for: `python -m cnn_core --help`, `python -m cnn_core models` (after its first call has
kept the table), the home page after `make run` (from the moment the server answers to the page's last
section drawn, in Debian's Chromium) and the Data page on CIFAR-10 (the script's run, from the decode cache).
Each figure is the median of ``repeat`` runs; the home page needs the test requirements (Playwright) and the
Data page CIFAR-10; each is left out without them.

    python -m bench.first_contact --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def command_seconds(args: list[str], repeat: int, env: dict[str, str]) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "cnn_core", *args], cwd=ROOT, env=env, check=True,
                       stdout=subprocess.DEVNULL)
        times.append(round(time.perf_counter() - start, 2))
    return times


def first_page_seconds(repeat: int) -> list[float] | None:
    """A fresh server each time (scripts/serve.py, as `make run` starts it): its first visitor's home page."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    sys.path.insert(0, str(ROOT))
    from scripts.appdriver import launch_chromium, serve

    times = []
    with sync_playwright() as p:
        browser = launch_chromium(p)
        for _ in range(repeat):
            with tempfile.TemporaryDirectory() as log, serve(ROOT / "checkpoints", Path(log) / "serve.log") as url:
                page = browser.new_page()
                start = time.perf_counter()
                page.goto(url)
                page.get_by_role("heading", name="Datasets").wait_for(timeout=120_000)  # the home page's last part
                times.append(round(time.perf_counter() - start, 2))
                page.close()
        browser.close()
    return times


def data_page_seconds(repeat: int) -> list[float] | None:
    """The Data page on CIFAR-10 from the decode cache, its own cache of the prepared dataset cleared each time
    (what a server's first visitor to the page waits for); None without CIFAR-10."""
    sys.path.insert(0, str(ROOT))
    from streamlit.testing.v1 import AppTest

    from cnn_core.data import dataset_table
    from cnn_core.engine import preview

    if not any(r["dataset"] == "cifar10" and r["present"] for r in dataset_table()):
        return None
    preview.look("cifar10")  # the decode cache exists (the first decode of the zip takes a minute)
    import streamlit as st

    times = []
    for _ in range(repeat):
        at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=120)
        at.run()
        st.cache_resource.clear()
        start = time.perf_counter()
        at.switch_page("pages/data.py").run()
        times.append(round(time.perf_counter() - start, 2))
        if at.exception or at.selectbox(key="da_dataset").value != "cifar10":
            raise SystemExit("bench: the Data page did not open on CIFAR-10")
    return times


def measure(repeat: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command_seconds(["models"], 1, env)  # the first call keeps the table in the cache folder
    out = {"help_s": command_seconds(["--help"], repeat, env), "models_s": command_seconds(["models"], repeat, env),
           "first_page_s": first_page_seconds(repeat), "data_page_cifar10_s": data_page_seconds(repeat)}
    return {k: {"runs": v, "median": statistics.median(v)} if v else None for k, v in out.items()}


def describe(result: dict) -> str:
    parts = [f"--help {result['help_s']['median']} s", f"models {result['models_s']['median']} s"]
    if result["first_page_s"]:
        parts.append(f"first page after the server answers {result['first_page_s']['median']} s")
    if result["data_page_cifar10_s"]:
        parts.append(f"Data page on CIFAR-10 {result['data_page_cifar10_s']['median']} s")
    n = len(result["help_s"]["runs"])
    return "first contact: " + ", ".join(parts) + f" (medians of {n} runs)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    result = measure(ap.parse_args().repeat)
    print(json.dumps(result))
    print(describe(result))


if __name__ == "__main__":
    main()
