"""One cifar10-fast run with model arguments the command line has no flags for (``--set '{"name": value}'``),
for bench.recipe's ablation: the config `train --preset cifar10-fast --seed S [flags]` builds, plus those
arguments, trained by the same train_run. Prints the summary as JSON on the last line."""

from __future__ import annotations

import argparse
import json

from cnn_core.config.argv import add_train_options, explicit_options
from cnn_core.models import make_config
from cnn_core.workflows.run import train_run


def main() -> None:
    ap = argparse.ArgumentParser()
    add_train_options(ap)
    ap.add_argument("--set", dest="model_args", type=json.loads, default={})
    args = ap.parse_args()
    cfg = make_config(**{"preset": "cifar10-fast", **explicit_options(args)})
    print(json.dumps(train_run(cfg.replace(extra={**cfg.extra, **args.model_args}))))


if __name__ == "__main__":
    main()
