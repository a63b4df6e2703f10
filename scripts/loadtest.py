"""Load test: N browser sessions each upload a photo on the Predict page at once while a training job runs.

    CNN_THREADS=1 python scripts/loadtest.py --sessions 20

Starts its own server (scripts/appdriver.py, loopback) over a copy of the committed MNIST demo run. N sessions
(tabs of one Chromium, small windows) open the Predict page with that model; then a long digits training job is
started from another browser session on the Train page, as a teacher would, and once it trains every session
uploads a drawn digit (0, 1, 4 or 7 in turn) at once. Latency is measured in each page, from the file input's
change event to the answer's heading appearing in the page, so the script's own one-at-a-time Playwright calls do
not add to it. Afterwards the job must still be training and have moved on during the load (or have finished),
and its best.pt must load; it is then cancelled from its page. Prints p50/p90/max and writes everything to
test-artifacts/loadtest.json. Exit status 1 when a session got no answer or a wrong one, or the job was harmed;
2 when the setup failed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python scripts/loadtest.py`
    sys.path.insert(0, str(ROOT))

from cnn_core.evaluation.predictor import Predictor  # noqa: E402
from cnn_core.runs.rundir import RunDir  # noqa: E402
from scripts.appdriver import ARTIFACTS, fill_train_form, launch_chromium, serve, settle  # noqa: E402

DEMO = "demo-mnist-lenet5"  # committed, trained on MNIST: it reads the drawn digits below at >= 99%
JOB = "loadtest-train"
MAX_SESSIONS = 50  # 2 cores: more would only measure the machine swapping
WINDOW = {"width": 800, "height": 600}
CONFIDENT = 0.99
MODEL_CAPTION = "lenet5 trained on mnist"  # the Predict page's caption for the demo run

# Set in each page before its upload: when the file input changes (t0) and when an answer heading "4 · 99.9%"
# first appears (t1), both on the browser's clock.
STOPWATCH_JS = r"""() => {
    window.__t0 = null; window.__t1 = null;
    const now = () => performance.timeOrigin + performance.now();  // ms, comparable between tabs
    document.addEventListener('change', e => {
        if (e.target.matches('input[type=file]') && window.__t0 === null) window.__t0 = now();
    }, true);
    const answered = () => [...document.querySelectorAll('[data-testid="stMain"] h3')]
        .some(h => /·\s*[\d.]+%/.test(h.textContent));
    new MutationObserver(() => {
        if (window.__t0 !== null && window.__t1 === null && answered()) window.__t1 = now();
    }).observe(document.body, {childList: true, subtree: true, characterData: true});
}"""
IDLE_JS = """(caption) => {
    const app = document.querySelector('[data-testid="stApp"]');
    return app && app.getAttribute('data-test-script-state') === 'notRunning'
        && !document.querySelector('[data-stale="true"], [data-testid="stSkeleton"]')
        && document.querySelector('[data-testid="stFileUploaderDropzoneInput"]')
        && (!caption || document.body.innerText.includes(caption));
}"""


def draw_digit(digit: str) -> Image.Image:
    """A thick white digit on black, the way MNIST writes them (280x280; the app scales it down)."""
    im = Image.new("L", (280, 280), 0)
    d = ImageDraw.Draw(im)
    strokes = {"0": lambda: d.ellipse([80, 45, 200, 235], outline=255, width=26),
               "1": lambda: d.line([(150, 50), (130, 230)], fill=255, width=28),
               "4": lambda: (d.line([(90, 50), (90, 150), (200, 150)], fill=255, width=26),
                             d.line([(180, 50), (180, 235)], fill=255, width=26)),
               "7": lambda: d.line([(70, 60), (210, 60), (120, 235)], fill=255, width=26, joint="curve")}
    strokes[digit]()
    return im


def write_digits(folder: Path, predictor: Predictor) -> dict[str, Path]:
    """The drawn digits as PNG files, after checking that the model reads each one unambiguously."""
    paths = {}
    for digit in ("0", "1", "4", "7"):
        im = draw_digit(digit)
        best = predictor.top_k([im], 1)[0][0]
        if best["label"] != digit or best["probability"] < CONFIDENT:
            raise RuntimeError(f"{predictor.run} reads the drawn {digit} as {best['label']} "
                               f"({best['probability']:.1%}); it is not a fair test image")
        paths[digit] = folder / f"digit-{digit}.png"
        im.save(paths[digit])
    return paths


def job_snapshot(run_dir: Path) -> dict:
    p = RunDir(run_dir).progress()
    return {"state": RunDir(run_dir).info().state, "epoch": p.get("epoch"), "batch": p.get("batch"),
            "time": time.time()}


def start_job(browser, url: str, root: Path, epochs: int, deadline: float):
    """Start the training job from a browser session and wait until it trains (its first progress.json)."""
    pg = browser.new_context(viewport=WINDOW).new_page()
    pg.set_default_timeout(60_000)
    pg.goto(f"{url}/train")
    settle(pg)
    fill_train_form(pg, JOB, epochs=epochs, batch_size=64)
    pg.get_by_role("button", name="Start training").click()
    pg.locator("h4").filter(has_text=f"Running: training {JOB}").wait_for()
    while not (root / JOB / "progress.json").is_file():
        if time.monotonic() > deadline or RunDir(root / JOB).info().state not in ("queued", "running", "unusable"):
            raise RuntimeError(f"the training job did not start training; see {root / JOB}")
        time.sleep(0.2)
    return pg


def remaining_ms(deadline: float) -> float:
    return max(1.0, (deadline - time.monotonic()) * 1000)


def open_sessions(browser, url: str, n: int, deadline: float) -> list:
    """N sessions on the Predict page, the stopwatch set in each, all ready to upload. They are tabs of one
    browser context: each tab is its own app session (its own websocket and session state), and the shared
    cache spares the server sending its JavaScript N times (that halved this step on 2 busy cores)."""
    ctx = browser.new_context(viewport=WINDOW)
    pages = [ctx.new_page() for _ in range(n)]
    for pg in pages:  # the loads overlap: each call returns once the page has been asked for
        pg.goto(f"{url}/predict", wait_until="commit", timeout=remaining_ms(deadline))
    for pg in pages:  # the demo run is the only one yet, so each session has it picked
        pg.wait_for_function(IDLE_JS, arg=MODEL_CAPTION, timeout=remaining_ms(deadline))
        pg.evaluate(STOPWATCH_JS)
    return pages


def predict_all(pages: list, digits: dict[str, Path], deadline: float) -> list[dict]:
    """Upload to every page in quick succession, then collect each answer and its latency."""
    order = list(digits)
    expected = [order[i % len(order)] for i in range(len(pages))]
    for pg, digit in zip(pages, expected):
        pg.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(digits[digit])
    results = []
    for i, (pg, digit) in enumerate(zip(pages, expected)):
        row = {"session": i + 1, "expected": digit, "label": None, "probability": None, "latency_s": None,
               "uploaded_ms": None, "error": None}
        try:
            pg.wait_for_function("() => window.__t1 !== null", timeout=remaining_ms(deadline))
            t0, t1 = pg.evaluate("() => [window.__t0, window.__t1]")
            heading = pg.locator('[data-testid="stMain"] h3').filter(has_text="%").first.inner_text()
            label, prob = (s.strip() for s in heading.split("·"))
            row.update(label=label, probability=round(float(prob.rstrip("%")) / 100, 4),
                       latency_s=round((t1 - t0) / 1000, 3), uploaded_ms=t0)
            if pg.locator('[data-testid="stException"], [data-testid="stAlertContentError"]').count():
                row["error"] = "the page shows an error"
            elif pg.get_by_text(MODEL_CAPTION).count() == 0:
                row["error"] = "the page no longer uses the demo model"
        except Exception as e:  # noqa: BLE001 - one session's failure is recorded; the others are still read
            row["error"] = str(e).splitlines()[0][:200]
        results.append(row)
    return results


def cancel_job(pg, root: Path) -> str:
    """Cancel the job from its page (unless it has finished); its final state as the run folder says."""
    if RunDir(root / JOB).info().state == "running":
        pg.get_by_role("button", name="Cancel").click()
        pg.locator("h4").filter(has_text=f"Cancelled: training {JOB}").wait_for()
    return RunDir(root / JOB).info().state


def summarise(rows: list[dict]) -> dict:
    lat = np.array([r["latency_s"] for r in rows if r["latency_s"] is not None])
    if not lat.size:
        return {"p50": None, "p90": None, "max": None, "min": None}
    return {"p50": round(float(np.percentile(lat, 50)), 3), "p90": round(float(np.percentile(lat, 90)), 3),
            "max": round(float(lat.max()), 3), "min": round(float(lat.min()), 3)}


def run(sessions: int, root: Path, out: Path, timeout: float, train_epochs: int) -> dict:
    from playwright.sync_api import sync_playwright

    shutil.copytree(ROOT / "checkpoints" / DEMO, root / DEMO, dirs_exist_ok=True)
    images = Path(tempfile.mkdtemp(prefix="loadtest-digits-"))
    digits = write_digits(images, Predictor.from_run(DEMO, root))
    report: dict = {"command": " ".join(["python", "scripts/loadtest.py", *sys.argv[1:]]), "sessions": sessions,
                    "cpus": os.cpu_count(), "loadavg_before": [round(x, 2) for x in os.getloadavg()],
                    "threads_per_job": os.environ.get("CNN_THREADS", "default")}
    deadline = time.monotonic() + timeout
    phases: dict[str, float] = {}
    mark = time.monotonic()

    def phase(name: str) -> None:
        nonlocal mark
        phases[name] = round(time.monotonic() - mark, 1)
        mark = time.monotonic()
        print(f"{name}: {phases[name]} s", file=sys.stderr, flush=True)

    with serve(root, ARTIFACTS / "loadtest-server.log") as url, sync_playwright() as p:
        browser = launch_chromium(p)
        phase("server_and_browser")
        try:
            pages = open_sessions(browser, url, sessions, deadline)
            phase("sessions_open")
            trainer = start_job(browser, url, root, train_epochs, deadline)
            phase("job_start")
            report["job_at_first_upload"] = job_snapshot(root / JOB)
            rows = predict_all(pages, digits, deadline)
            phase("load")
            report["job_after_last_answer"] = job_snapshot(root / JOB)
            report["job_best_loads"] = Predictor.from_run(JOB, root).classes == [str(i) for i in range(10)]
            report["job_final_state"] = cancel_job(trainer, root)
            phase("job_cancel")
        finally:
            browser.close()
            shutil.rmtree(images, ignore_errors=True)
    report["load_seconds"] = phases["load"]
    report["phase_seconds"] = phases
    report["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    report["latency_s"] = summarise(rows)
    uploads = [r["uploaded_ms"] for r in rows if r["uploaded_ms"] is not None]
    report["upload_spread_s"] = round((max(uploads) - min(uploads)) / 1000, 2) if uploads else None
    report["answered"] = sum(r["label"] is not None and r["error"] is None for r in rows)
    report["correct"] = sum(r["label"] == r["expected"] and r["error"] is None for r in rows)
    report["per_session"] = rows
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    return report


def job_unharmed(report: dict) -> bool:
    """Training at the first upload, and afterwards moved on (or finished), with a loadable best.pt."""
    before, after = report["job_at_first_upload"], report["job_after_last_answer"]
    moved = (after["epoch"] or 0, after["batch"] or 0) > (before["epoch"] or 0, before["batch"] or 0)
    return (before["state"] == "running" and report["job_best_loads"]
            and (after["state"] == "finished" or (after["state"] == "running" and moved))
            and report["job_final_state"] in ("cancelled", "finished"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=20, help=f"browser sessions predicting at once (1-{MAX_SESSIONS})")
    ap.add_argument("--timeout", type=float, default=180, help="seconds for everything after the server is up")
    ap.add_argument("--train-epochs", type=int, default=300, help="epochs of the background job (it is cancelled "
                    "after the load, so it only needs to outlast it)")
    ap.add_argument("--root", type=Path, help="checkpoints folder for the server (default: a temporary one)")
    ap.add_argument("--json", type=Path, default=ARTIFACTS / "loadtest.json", help="where the report goes")
    args = ap.parse_args(argv)
    if not 1 <= args.sessions <= MAX_SESSIONS:
        ap.error(f"--sessions must be 1-{MAX_SESSIONS}, not {args.sessions}")
    tmp = None if args.root else Path(tempfile.mkdtemp(prefix="loadtest-"))
    root = args.root or tmp / "checkpoints"
    try:
        report = run(args.sessions, root.resolve(), args.json, args.timeout, args.train_epochs)
    except Exception as e:  # noqa: BLE001 - a setup failure is one line, the server log has the rest
        print(f"error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    lat = report["latency_s"]
    print(f"{report['answered']}/{args.sessions} sessions answered ({report['correct']} right) in "
          f"{report['load_seconds']} s; latency upload -> answer: p50 {lat['p50']} s, p90 {lat['p90']} s, "
          f"max {lat['max']} s; job {report['job_after_last_answer']['state']} during the load, then "
          f"{report['job_final_state']}; report in {args.json}")
    ok = report["correct"] == args.sessions and job_unharmed(report)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
