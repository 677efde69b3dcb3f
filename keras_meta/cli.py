"""The `keras-meta` command line."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keras-meta", description="Meta-learning for Keras."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo", help="Meta-train MAML on sinusoid regression (no download)."
    )
    demo.add_argument("--iterations", type=int, default=None,
                      help="meta-iterations (default: a few minutes on 2 CPU cores)")
    demo.add_argument("--out", default="demo_output", help="output folder")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--eval-tasks", type=int, default=600)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        from keras_meta.demo import run_demo

        run_demo(
            iterations=args.iterations,
            out_dir=args.out,
            seed=args.seed,
            eval_tasks=args.eval_tasks,
        )
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
