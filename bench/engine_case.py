"""One engine measurement in its own process (so its peak memory is its own): train through train_run(), what
`python -m cnn_core train` runs, then time evaluation over the test split. Prints one JSON line."""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time

import torch

from cnn_core.config import TrainConfig
from cnn_core.engine.batches import Batches
from cnn_core.engine.device import pick_device, pick_precision
from cnn_core.engine.forward import predict_logits
from cnn_core.engine.prepared import eval_batches, prepare_data
from cnn_core.workflows.run import train_run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--max-batches", type=int, default=0)
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--preset", default="")
    args = ap.parse_args()
    from cnn_core.config import preset_options

    base = preset_options(args.preset) if args.preset else {}
    cfg = TrainConfig(**{**base, "model": args.model, "dataset": "cifar10", "epochs": 1,
                         "batch_size": args.batch_size, "augment": False, "max_batches": args.max_batches,
                         "precision": args.precision, "schedule": "none", "lr": 0.01, "tta": False,
                         "val_fraction": 0.01})  # a small validation pass: it is not what is timed
    with tempfile.TemporaryDirectory() as root:
        s = train_run(cfg, name="bench", root=root)
    # evaluation speed on the full test split, model as trained above is irrelevant for speed
    device = pick_device("auto")
    prep = prepare_data(cfg, device=device)
    from cnn_core.models import build_model
    model = build_model(cfg.model, 10, 3, prep.size, **cfg.extra).to(device, memory_format=torch.channels_last)
    amp = pick_precision(cfg.precision, device)
    prep.x_test, prep.y_test = prep.x_test[:2048], prep.y_test[:2048]  # enough for a rate, cheap for resnet18
    batches = eval_batches(prep, "test", 512)
    predict_logits(model, Batches(prep.x_test[:512], prep.y_test[:512], 512, prep.normalize()), device, amp)  # warm
    t = time.perf_counter()
    logits, _ = predict_logits(model, batches, device, amp)
    eval_s = time.perf_counter() - t
    print(json.dumps({"loop": "engine", "model": args.model, "batch_size": args.batch_size,
                      "train_images": int(s["images_per_second"] * s["train_seconds"]),
                      "train_images_per_second": s["images_per_second"],
                      "eval_images_per_second": round(len(logits) / eval_s, 1), "precision": s["precision"],
                      "threads": torch.get_num_threads(),
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))


if __name__ == "__main__":
    main()
