"""The process options of the training scripts (`reproduce.py`, `pretrain.py`):
`--threads`, `--onednn` and `--time-limit`, as `keras-meta train` has them.

Importing this module imports no TensorFlow: `apply` sets oneDNN's switch
before it does, since TensorFlow reads the switch when it is imported.
"""

from __future__ import annotations

import argparse
import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def add(parser: argparse.ArgumentParser) -> None:
    """Adds `--threads`, `--onednn` and `--time-limit` to `parser`."""
    parser.add_argument(
        "--threads", type=int, help="threads of each TensorFlow op (default: one per core)"
    )
    parser.add_argument(
        "--onednn",
        choices=("on", "off"),
        help="TensorFlow's oneDNN CPU kernels (TF_ENABLE_ONEDNN_OPTS; default: TensorFlow's "
        "choice); on: ProtoNet ~2.3x faster on an AVX2 CPU, MAML slower (docs/performance.md)",
    )
    parser.add_argument(
        "--time-limit",
        metavar="DURATION",
        help="stop training after the last epoch that fits (e.g. 2h10m; see keras-meta train "
        "--time-limit) and exit with status 75; the same command resumes",
    )


def apply(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Applies the options before the script uses TensorFlow; replaces
    `args.time_limit` by seconds. A usage error when one cannot apply."""
    sys.path.insert(0, REPO_ROOT)
    if args.onednn is not None:
        os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1" if args.onednn == "on" else "0"
    from keras_meta._backend import onednn_enabled
    from keras_meta.cli import duration, set_threads

    if args.onednn is not None and onednn_enabled() != (args.onednn == "on"):
        parser.error(f"--onednn {args.onednn}: TensorFlow was imported before the switch "
                     "was set, or ignores it")
    if args.time_limit is not None:
        try:
            args.time_limit = duration(args.time_limit)
        except argparse.ArgumentTypeError as error:
            parser.error(f"--time-limit: {error}")
    if args.threads is not None:
        set_threads(args.threads)
