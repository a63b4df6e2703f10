"""The cifar10-fast recipe, measured: time to accuracy of the preset, and its ablation (each idea off in turn).

Each run is the real command, `python -m cnn_core train --preset cifar10-fast --seed S` (plus the flags that
turn one idea off), in its own process, into a temporary checkpoints folder; its wall time is the whole command's
(start-up, loading CIFAR-10 from the decode cache, training, the test pass). Needs CIFAR-10 (CNN_DATA_DIR).

    python -m bench.recipe --seeds 0 1 2                 # the preset's three runs: accuracy and wall time each
    python -m bench.recipe --ablate --seeds 0 1 2        # the preset, then each idea off, same seeds
    python -m bench.recipe --ablate --only lookahead --seeds 0   # some ideas only
    python -m bench.recipe --tta-of checkpoints/demo-cifar10-fast   # a trained run's test accuracy per TTA kind

Prints a Markdown table (the one in docs/results.md) and writes every run to recipe-results.json.
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
PRESET = "cifar10-fast"

# Each idea of the recipe and the flags that turn it off (back to the plainer choice), in the order the table
# lists them. Model arguments have no flags: those go through --set (a JSON object of fit() extras).
IDEAS: dict[str, tuple[str, list[str]]] = {
    "lookahead": ("lookahead (weights pulled back to their running average)", ["--lookahead", "off"]),
    "triangle": ("triangular schedule, ending at 7% of the peak (off: one-cycle to zero)",
                 ["--schedule", "onecycle"]),
    "alternate_flips": ("flips alternating by epoch (off: a coin per image and epoch)", ["--flip-mode", "random"]),
    "reflect_crops": ("crops padded with the mirrored border (off: zeros)", ["--crop-fill", "zeros"]),
    "whiten_bias": ("whitening bias learns for 3 epochs, then stays (off: learns throughout)",
                    ["--set", '{"whiten_bias_epochs": 1000}']),
}


def run_once(seed: int, flags: list[str]) -> dict:
    """One whole `python -m cnn_core train --preset cifar10-fast` command: its summary and wall time. A model
    argument (``--set JSON``, no train flag) goes through bench.recipe_case, which builds the same config and
    calls what the command calls."""
    with tempfile.TemporaryDirectory(prefix="recipe-") as root:
        if "--set" in flags:
            cmd = [sys.executable, "-m", "bench.recipe_case", "--seed", str(seed), *flags]
        else:
            cmd = [sys.executable, "-m", "cnn_core", "train", "--preset", PRESET, "--seed", str(seed), *flags,
                   "--quiet", "--json"]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "CNN_CHECKPOINTS": root}
        start = time.perf_counter()
        p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - start
    if p.returncode != 0:
        raise SystemExit(f"bench.recipe: seed {seed} {' '.join(flags)} failed: {p.stderr.strip().splitlines()[-1:]}")
    summary = json.loads(p.stdout.strip().splitlines()[-1])
    shown = ["python", "-m", "cnn_core", "train", "--preset", PRESET, "--seed", str(seed), *flags]
    return {"seed": seed, "flags": flags, "wall_seconds": round(wall, 1), "test_accuracy": summary["test_accuracy"],
            "epochs": summary["epochs_run"], "train_seconds": summary["train_seconds"],
            "command": " ".join(shown) if "--set" not in flags else "bench.recipe_case " + " ".join(flags)}


def describe(rows: list[dict]) -> dict:
    acc = [r["test_accuracy"] for r in rows]
    wall = [r["wall_seconds"] for r in rows]
    return {"runs": len(rows), "mean_accuracy": round(statistics.mean(acc), 5), "min_accuracy": min(acc),
            "max_wall_seconds": max(wall), "median_wall_seconds": round(statistics.median(wall), 1)}


def time_to_accuracy(seeds: list[int]) -> dict:
    """The preset as a student runs it, once per seed: the figures `make bench` prints."""
    rows = [run_once(s, []) for s in seeds]
    return {"preset": PRESET, "rows": rows, **describe(rows)}


def print_time_to_accuracy(t: dict) -> None:
    runs = "; ".join(f"seed {r['seed']} {r['test_accuracy']:.2%} in {r['wall_seconds']:.0f} s" for r in t["rows"])
    print(f"{t['preset']} time to accuracy (whole command, {t['rows'][0]['epochs']} epochs): {runs}; "
          f"mean {t['mean_accuracy']:.2%}, longest {t['max_wall_seconds']:.0f} s")


def tta_views(run_dirs: list[str]) -> list[dict]:
    """The test accuracy of each trained run's best checkpoint with each kind of test-time augmentation: no
    views, the mirror, the mirror and 1-pixel shifts (6 views), 2-pixel shifts. No training: the TTA ablation."""
    import torch

    from cnn_core.config import TrainConfig
    from cnn_core.engine.device import inference_precision, pick_device
    from cnn_core.engine.forward import predict_logits
    from cnn_core.engine.prepared import eval_batches, prepare_data
    from cnn_core.runs.checkpoint import load_checkpoint, model_from_checkpoint
    from cnn_core.runs.rundir import RunDir

    out = []
    for path in run_dirs:
        run = RunDir.resolve(path)
        ckpt = load_checkpoint(run.checkpoint("best"))
        cfg = TrainConfig.from_dict(ckpt["config"])
        device = pick_device("auto")
        prep = prepare_data(cfg, None, device, run.file(RunDir.SPLIT))
        model = model_from_checkpoint(ckpt).to(device, memory_format=torch.channels_last)
        row = {"run": run.name}
        for label, tta, shift in (("none", False, 0), ("mirror", True, 0), ("mirror + 1 px", True, 1),
                                  ("mirror + 2 px", True, 2)):
            start = time.perf_counter()
            logits, y = predict_logits(model, eval_batches(prep, "test"), device,
                                       inference_precision(cfg.precision, device), tta, shift)
            row[label] = {"accuracy": round(float((logits.argmax(1) == y).float().mean()), 5),
                          "seconds": round(time.perf_counter() - start, 1)}
        out.append(row)
        print(f"{run.name}: " + ", ".join(f"{k} {v['accuracy']:.2%} ({v['seconds']:.0f} s)"
                                           for k, v in row.items() if k != "run"), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--ablate", action="store_true", help="also each idea off in turn")
    ap.add_argument("--only", nargs="+", choices=sorted(IDEAS), help="ablate only these ideas")
    ap.add_argument("--no-preset", action="store_true", help="skip the preset's own runs (ablation rows only)")
    ap.add_argument("--before", action="store_true", help="also the recipe before these ideas: every one off, and "
                    "test-time views of the mirror only")
    ap.add_argument("--tta-of", nargs="+", metavar="RUN", help="only: the test accuracy of these trained runs with "
                    "each kind of test-time augmentation (no training)")
    ap.add_argument("--out", default="recipe-results.json")
    args = ap.parse_args()
    if args.tta_of:
        Path(args.out).write_text(json.dumps({"when": time.strftime("%Y-%m-%d %H:%M:%S"),
                                              "tta": tta_views(args.tta_of)}, indent=2) + "\n")
        print(f"written: {args.out}")
        return
    variants = [] if args.no_preset else [("preset", "the cifar10-fast preset as it is", [])]
    if args.ablate:
        variants += [(k, f"without {IDEAS[k][0]}", IDEAS[k][1]) for k in (args.only or IDEAS)]
    if args.before:
        variants.append(("before", "every idea off, mirror-only test-time views (the preset before issue 19)",
                         [f for k in IDEAS for f in IDEAS[k][1]] + ["--tta-shift", "0"]))
    results = []
    for key, text, flags in variants:
        rows = [run_once(s, flags) for s in args.seeds]
        results.append({"variant": key, "what": text, "flags": flags, "rows": rows, **describe(rows)})
        print(f"{key}: " + ", ".join(f"seed {r['seed']} {r['test_accuracy']:.2%} {r['wall_seconds']:.0f} s"
                                     for r in rows), flush=True)
        Path(args.out).write_text(json.dumps({"when": time.strftime("%Y-%m-%d %H:%M:%S"), "variants": results},
                                             indent=2) + "\n")
    print(f"\n| variant | test accuracy (seeds {', '.join(map(str, args.seeds))}) | mean | wall time (median) |")
    print("|---|---|---|---|")
    for r in results:
        accs = ", ".join(f"{x['test_accuracy']:.2%}" for x in r["rows"])
        print(f"| {r['what']} | {accs} | {r['mean_accuracy']:.2%} | {r['median_wall_seconds']:.0f} s |")
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
