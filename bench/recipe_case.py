"""One cifar10-fast run with model arguments the command line has no flags for (``--set '{"name": value}'``),
for bench.recipe's ablation: the same config `train --preset cifar10-fast --seed S` builds, plus those
arguments, trained by the same train_run. Prints the summary as JSON on the last line."""

from __future__ import annotations

import argparse
import json

from cnn_core.models import make_config
from cnn_core.workflows.run import train_run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", dest="extra", type=json.loads, default={})
    args = ap.parse_args()
    cfg = make_config(preset="cifar10-fast", seed=args.seed)
    print(json.dumps(train_run(cfg.replace(extra={**cfg.extra, **args.extra}))))


if __name__ == "__main__":
    main()
