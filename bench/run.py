"""`make bench`: the reference loop and the engine, side by side, in one run, on the same CIFAR-10 data.

Each measurement runs in its own child process so that its peak resident memory is its own (read with
getrusage on the child). Augmentation is off on both sides; both use batch 100 unless a row says otherwise.
Each side of a row runs --repeat times (3), alternating with the other side, and the table gives medians: this
host's speed drifts by tens of percent between minutes, which a single pair of runs mistakes for a ratio.
Prints a table and writes the same figures (and every sample) to bench-results.json.

    make bench                      # full: lenet5 full epoch, resnet18 and fastnet on fixed batches
    python -m bench.run --quick     # fewer batches, for a smoke check
    python -m bench.run --predict-only --repeat 6   # only the 12-MP prediction, 6 processes x 50 (~1 min)
    python -m bench.first_contact                   # only --help, models and the first page after make run
    python -m bench.run --explain-only              # only one photo's explanation per demo model and resnet18
    python -m bench.recipe --seeds 0 1 2            # only the cifar10-fast preset's time to accuracy, 3 seeds
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench import first_contact, recipe

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT.parent / "shared" / "bench" / "reference_loop.py"


# Runs the measured command as its own child and reports that child tree's peak RSS (largest process), so no
# earlier measurement can leak into a later one's figure.
_WRAP = ("import json, resource, subprocess, sys; p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
         "sys.stdout.write(p.stdout); sys.stderr.write(p.stderr); "
         "print(json.dumps({'peak_rss_kb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss})); "
         "sys.exit(p.returncode)")


def child(cmd: list[str]) -> dict:
    """Run one measurement; its last stdout line is JSON. Adds the child tree's peak RSS in MB."""
    p = subprocess.run([sys.executable, "-c", _WRAP, *cmd], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    if p.returncode != 0:
        raise SystemExit(f"bench: {' '.join(cmd[:4])} failed: {p.stderr.strip().splitlines()[-1:]}")
    lines = p.stdout.strip().splitlines()
    out = json.loads(lines[-2])
    out["peak_rss_mb"] = round(json.loads(lines[-1])["peak_rss_kb"] / 1024, 1)
    return out


def reference(data: Path, model: str, max_batches: int) -> dict:
    cmd = [sys.executable, str(REFERENCE), "--data", str(data), "--model", model, "--epochs", "1"]
    if max_batches:
        cmd += ["--max-batches", str(max_batches)]
    return child(cmd)


def engine(model: str, max_batches: int, batch_size: int = 100, preset: str = "") -> dict:
    cmd = [sys.executable, "-m", "bench.engine_case", "--model", model, "--batch-size", str(batch_size)]
    if max_batches:
        cmd += ["--max-batches", str(max_batches)]
    if preset:
        cmd += ["--preset", preset]
    return child(cmd)


def prediction_latency(runs: int = 50) -> dict:
    """p50/p95 of a 12-megapixel JPEG through the predict path (decode + preprocess + forward), model loaded;
    the decode's own share of each run is kept beside it."""
    code = f"""
import io, json, statistics, time, numpy as np
from PIL import Image
from cnn_core.evaluation.predictor import Predictor
from cnn_core.models import build_model
rng = np.random.default_rng(0)
small = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
img = Image.fromarray(small).resize((4000, 3000), Image.Resampling.BICUBIC)  # 12 MP, photo-like smoothness
buf = io.BytesIO(); img.save(buf, "JPEG", quality=90); data = buf.getvalue()
model = build_model("fastnet", 10, 3, 32).eval()
p = Predictor(model, [str(i) for i in range(10)], 32, 3, [0.5] * 3, [0.25] * 3, True, "bench")
def once():
    t = time.perf_counter(); im = p.load(data); t_decoded = time.perf_counter(); p.top_k([im], 3)
    return (time.perf_counter() - t) * 1000, (t_decoded - t) * 1000
for _ in range(3): once()
both = [once() for _ in range({runs})]
ms, decode = sorted(b[0] for b in both), sorted(b[1] for b in both)
def q(f): return round(ms[min(len(ms) - 1, int(f * len(ms)))], 1)
print(json.dumps({{"jpeg_bytes": len(data), "megapixels": 12.0, "runs": {runs}, "p50_ms": q(0.5), "p95_ms": q(0.95),
                  "ms": [round(m, 2) for m in ms], "decode_ms": [round(m, 2) for m in decode]}}))
"""
    return child([sys.executable, "-c", code])


# One photo explained as the Predict page and `explain` do it: the 12-MP JPEG decoded (draft), predict's top 3,
# Grad-CAM, every stage's activations, and the images rendered (both overlays, every stage's grid, the filters).
_EXPLAIN = """
import io, json, sys, time, numpy as np
from PIL import Image
from cnn_core.evaluation.explain import explain
from cnn_core.evaluation.predictor import Predictor
from cnn_core.models import build_model
rng = np.random.default_rng(0)
small = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
img = Image.fromarray(small).resize((4000, 3000), Image.Resampling.BICUBIC)
buf = io.BytesIO(); img.save(buf, "JPEG", quality=90); data = buf.getvalue()
runs = int(sys.argv[1])
models = {name: Predictor.from_run(name, "checkpoints") for name in sys.argv[2:]}
net = build_model("resnet18", 10, 3, 32).eval()
models["resnet18 (untrained, 32x32)"] = Predictor(net, [str(i) for i in range(10)], 32, 3, [0.5] * 3, [0.25] * 3,
                                                  False, "bench", "resnet18")
def once(p):
    t = time.perf_counter(); e = explain(p, data)
    e.overlays(); [s.grid() for s in e.stages]
    return (time.perf_counter() - t) * 1000
out = {}
for name, p in models.items():
    for _ in range(3): once(p)
    ms = sorted(once(p) for _ in range(runs))
    out[name] = {"ms": [round(m, 2) for m in ms]}
print(json.dumps(out))
"""
DEMO_RUNS = ("demo-cifar10-fast", "demo-cifar10-lenet5", "demo-mnist-lenet5")


def explain_rounds(repeat: int, runs: int) -> dict:
    """``repeat`` processes of ``runs`` explanations per model, pooled: p50/p95 per model, and each process's p50."""
    rounds = [child([sys.executable, "-c", _EXPLAIN, str(runs), *DEMO_RUNS]) for _ in range(repeat)]
    out = {}
    for name in rounds[0]:
        if name == "peak_rss_mb":
            continue
        ms = sorted(m for r in rounds for m in r[name]["ms"])
        out[name] = {"runs": len(ms), "p50_ms": round(ms[len(ms) // 2], 1),
                     "p95_ms": round(ms[min(len(ms) - 1, int(0.95 * len(ms)))], 1),
                     "p50_ms_per_round": [round(sorted(r[name]["ms"])[len(r[name]["ms"]) // 2], 1) for r in rounds]}
    return out


def print_explain(explained: dict) -> None:
    for name, r in explained.items():
        print(f"explain one 12-MP photo ({name}): p50 {r['p50_ms']} ms, p95 {r['p95_ms']} ms over {r['runs']} runs "
              f"(p50 per process: " + ", ".join(f"{x} ms" for x in r["p50_ms_per_round"]) + ")")


def summarise(samples: list[dict]) -> dict:
    """One side of a row: the median of each speed over its repeats, the largest peak memory, every sample."""
    out = {**samples[0], "samples": samples}
    for key in ("train_images_per_second", "eval_images_per_second"):
        out[key] = statistics.median(s[key] for s in samples)
    out["peak_rss_mb"] = max(s["peak_rss_mb"] for s in samples)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.path.join(os.environ.get("CNN_DATA_DIR", "../shared/datasets"),
                                                     "cifar10-jpeg.zip"))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each side per row, alternating (default 3)")
    ap.add_argument("--out", default="bench-results.json")
    ap.add_argument("--predict-only", action="store_true", help="only the 12-MP JPEG prediction latency")
    ap.add_argument("--explain-only", action="store_true", help="only one photo's explanation latency")
    args = ap.parse_args()
    if args.predict_only or args.explain_only:  # one latency alone
        key, measure, show = (("explain", explain_rounds, print_explain) if args.explain_only else
                              ("predict_12mp", predict_rounds, print_latency))
        measured = measure(args.repeat, (5 if args.quick else 20) if args.explain_only else (10 if args.quick else 50))
        Path(args.out).write_text(json.dumps({"when": time.strftime("%Y-%m-%d %H:%M:%S"), key: measured},
                                             indent=2) + "\n")
        show(measured)
        print(f"written: {args.out}")
        return
    data = Path(args.data).resolve()
    if not data.exists():
        raise SystemExit(f"bench: {data} not found; set CNN_DATA_DIR to the folder holding cifar10-jpeg.zip")
    # the engine's decode cache and the reference loop's unpacked copy are both built before timing starts
    subprocess.run([sys.executable, "-c", "from cnn_core.data import load_dataset; load_dataset('cifar10')"],
                   cwd=ROOT, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    child([sys.executable, str(REFERENCE), "--data", str(data), "--model", "lenet5", "--max-batches", "1"])

    # The host's speed drifts by tens of percent from minute to minute, so each side runs ``--repeat`` times,
    # alternating reference and engine, and the row reports the median of each side.
    cases = [("lenet5", 20 if args.quick else 0), ("resnet18", 4 if args.quick else 20)]
    rows = []
    for model, batches in cases:
        refs, engs = [], []
        for _ in range(args.repeat):
            refs.append(reference(data, model, batches))
            engs.append(engine(model, batches))
        ref, eng = summarise(refs), summarise(engs)
        rows.append({"model": model, "batches": batches or "full epoch", "reference": ref, "engine": eng,
                     "train_ratio": round(eng["train_images_per_second"] / ref["train_images_per_second"], 2),
                     "eval_ratio": round(eng["eval_images_per_second"] / ref["eval_images_per_second"], 2),
                     "train_ratio_per_pair": [round(e["train_images_per_second"] / r["train_images_per_second"], 2)
                                              for r, e in zip(refs, engs)]})
    fast = engine("fastnet", 5 if args.quick else 40, batch_size=512, preset="cifar10-fast")
    latency = predict_rounds(args.repeat, 10 if args.quick else 50)
    explained = explain_rounds(args.repeat, 5 if args.quick else 20)
    contact = first_contact.measure(args.repeat)
    # the preset as a student runs it (whole command, seed 0): what the ratios above buy; skipped by --quick
    to_accuracy = None if args.quick else recipe.time_to_accuracy([0])
    result = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                          "python": platform.python_version()},
              "when": time.strftime("%Y-%m-%d %H:%M:%S"), "rows": rows, "fastnet": fast, "predict_12mp": latency,
              "explain": explained, "first_contact": contact, "time_to_accuracy": to_accuracy}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")

    print(f"{'model':<10}{'batches':>11}{'reference img/s':>17}{'engine img/s':>14}{'ratio':>7}"
          f"{'ref eval/s':>12}{'eng eval/s':>12}{'ref peak MB':>13}{'eng peak MB':>13}")
    for r in rows:
        print(f"{r['model']:<10}{str(r['batches']):>11}{r['reference']['train_images_per_second']:>17,.0f}"
              f"{r['engine']['train_images_per_second']:>14,.0f}{r['train_ratio']:>6.1f}x"
              f"{r['reference']['eval_images_per_second']:>12,.0f}{r['engine']['eval_images_per_second']:>12,.0f}"
              f"{r['reference']['peak_rss_mb']:>13,.0f}{r['engine']['peak_rss_mb']:>13,.0f}")
    print(f"(medians of {args.repeat} alternating runs per side; train ratio of each pair: "
          + "; ".join(f"{r['model']} " + ", ".join(f"{x:.1f}x" for x in r["train_ratio_per_pair"]) for r in rows)
          + ")")
    print(f"fastnet (cifar10-fast settings, batch 512, {fast['precision']}): {fast['train_images_per_second']:,.0f} "
          f"train img/s, {fast['eval_images_per_second']:,.0f} eval img/s, peak {fast['peak_rss_mb']:,.0f} MB")
    print_latency(latency)
    print_explain(explained)
    print(first_contact.describe(contact))
    if to_accuracy is not None:
        recipe.print_time_to_accuracy(to_accuracy)
    print(f"written: {args.out}")


def predict_rounds(repeat: int, runs: int) -> dict:
    """``repeat`` processes of ``runs`` predictions each, pooled: p50/p95 of all, and each process's p50."""
    rounds = [prediction_latency(runs) for _ in range(repeat)]
    ms = sorted(m for r in rounds for m in r["ms"])
    decode = sorted(m for r in rounds for m in r["decode_ms"])  # of the same runs: the JPEG decode alone
    return {**rounds[0], "runs": len(ms), "ms": ms, "p50_ms": round(ms[len(ms) // 2], 1),
            "decode_ms": decode, "decode_p50_ms": round(decode[len(decode) // 2], 1),
            "p95_ms": round(ms[min(len(ms) - 1, int(0.95 * len(ms)))], 1),
            "p50_ms_per_round": [r["p50_ms"] for r in rounds],
            "peak_rss_mb": max(r["peak_rss_mb"] for r in rounds)}


def print_latency(latency: dict) -> None:
    print(f"predict 12-MP JPEG (fastnet, model loaded): p50 {latency['p50_ms']} ms, p95 {latency['p95_ms']} ms "
          f"over {latency['runs']} runs in {len(latency['p50_ms_per_round'])} processes (p50 of each: "
          + ", ".join(f"{x} ms" for x in latency["p50_ms_per_round"])
          + f"); of which decoding the JPEG: p50 {latency['decode_p50_ms']} ms")


if __name__ == "__main__":
    main()
