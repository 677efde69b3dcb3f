"""The `keras-meta` command line.

```
keras-meta train --preset maml-omniglot-5w1s --data-dir DATA --out runs/maml
keras-meta evaluate runs/maml --episodes 600
keras-meta adapt runs/maml --support my_classes/ --out adapted/
keras-meta presets [NAME]
keras-meta demo
```

See `docs/cli.md`. The work is done by `keras_meta.runs`; this module only
parses arguments, so that `--help` answers without building anything.
"""

from __future__ import annotations

import argparse
import json
import sys

# Command-line option -> configuration field (keras_meta.presets.FIELDS).
_TRAIN_OPTIONS = {
    "algorithm": "algorithm",
    "dataset": "dataset",
    "data_dir": "data_dir",
    "ways": "ways",
    "shots": "shots",
    "queries": "queries",
    "eval_ways": "eval_ways",
    "eval_shots": "eval_shots",
    "eval_queries": "eval_queries",
    "meta_batch_size": "meta_batch_size",
    "inner_lr": "inner_learning_rate",
    "inner_steps": "inner_steps",
    "eval_inner_steps": "eval_inner_steps",
    "inner_optimizer": "inner_optimizer",
    "inner_batch_size": "inner_batch_size",
    "meta_lr": "meta_learning_rate",
    "optimizer": "optimizer",
    "iterations": "iterations",
    "steps_per_epoch": "steps_per_epoch",
    "val_episodes": "val_episodes",
    "eval_episodes": "eval_episodes",
    "checkpoint": "checkpoint",
    "filters": "filters",
    "pooling": "pooling",
    "image_size": "image_size",
    "color_mode": "color_mode",
    "invert": "invert",
    "split": "split",
    "split_sizes": "split_sizes",
    "split_seed": "split_seed",
    "augmentation": "augmentation",
    "bn_mode": "bn_mode",
    "distance": "distance",
    "seed": "seed",
}


def _split_sizes(text: str) -> list:
    try:
        values = [float(v) if "." in v else int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected three comma-separated numbers, e.g. 1100,100,423 or "
            f"0.6,0.2,0.2; received {text!r}"
        ) from None
    if len(values) != 3:
        raise argparse.ArgumentTypeError(
            f"expected three sizes (train,validation,test); received {text!r}"
        )
    return values


def _add_train_parser(sub):
    p = sub.add_parser(
        "train",
        help="meta-train a learner into a run directory (resumes an unfinished one)",
        description=(
            "Meta-trains a learner. A --preset pins a published protocol; "
            "options override its fields. Running the same command again "
            "resumes an interrupted run at its last completed epoch."
        ),
    )
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory")
    p.add_argument("--preset", help="a named protocol (see `keras-meta presets`)")
    p.add_argument("--config", metavar="JSON", help="a configuration file to start from")
    g = p.add_argument_group("algorithm and data")
    g.add_argument(
        "--algorithm",
        choices=["maml", "fomaml", "protonet", "reptile", "metasgd", "anil"],
    )
    g.add_argument("--dataset", choices=["omniglot", "sinusoid", "folder"])
    g.add_argument(
        "--data-dir",
        help="Omniglot: the folder with images_background.zip and "
        "images_evaluation.zip; folder: one sub-folder of images per class",
    )
    g.add_argument("--split", choices=["mixed", "official", "random", "none"])
    g.add_argument("--split-sizes", type=_split_sizes, metavar="TRAIN,VAL,TEST")
    g.add_argument("--split-seed", type=int)
    g.add_argument("--augmentation", choices=["none", "class_rotation", "rotations_as_classes"])
    g.add_argument("--image-size", type=int)
    g.add_argument("--color-mode", choices=["grayscale", "rgb"])
    g.add_argument(
        "--invert",
        action="store_true",
        default=None,
        help="folder dataset: use 1 - image (dark ink on a light background)",
    )
    g = p.add_argument_group("episodes")
    g.add_argument("--ways", type=int)
    g.add_argument("--shots", type=int)
    g.add_argument("--queries", type=int, help="query examples per class in training")
    g.add_argument("--eval-ways", type=int)
    g.add_argument("--eval-shots", type=int)
    g.add_argument("--eval-queries", type=int)
    g.add_argument("--meta-batch-size", type=int)
    g = p.add_argument_group("optimisation")
    g.add_argument("--inner-lr", type=float)
    g.add_argument("--inner-steps", type=int)
    g.add_argument("--eval-inner-steps", type=int)
    g.add_argument("--inner-optimizer", choices=["sgd", "adam"], help="reptile only")
    g.add_argument("--inner-batch-size", type=int, help="reptile only")
    g.add_argument("--meta-lr", type=float)
    g.add_argument("--optimizer", choices=["adam", "sgd"])
    g.add_argument("--iterations", type=int, help="meta-iterations (the budget)")
    g.add_argument(
        "--steps-per-epoch",
        type=int,
        help="meta-iterations between validations and checkpoints",
    )
    g.add_argument("--val-episodes", type=int, help="validation episodes per epoch")
    g.add_argument("--eval-episodes", type=int)
    g.add_argument("--checkpoint", choices=["final", "best"])
    g.add_argument("--seed", type=int)
    g = p.add_argument_group("model")
    g.add_argument("--filters", type=int)
    g.add_argument("--pooling", choices=["max", "strided"])
    g.add_argument("--bn-mode", choices=["transductive", "running"])
    g.add_argument("--distance", choices=["euclidean", "cosine"])
    p.add_argument("--verbose", type=int, choices=[0, 1, 2], default=1)
    # Interrupts training after N epochs: tests resumption end to end.
    p.add_argument("--fail-after-epochs", type=int, help=argparse.SUPPRESS)
    # Kills the process after N training batches: tests a crash mid-epoch.
    p.add_argument("--crash-after-batches", type=int, help=argparse.SUPPRESS)
    return p


def build_parser() -> argparse.ArgumentParser:
    """The `keras-meta` argument parser.

    Example:

    >>> build_parser().parse_args(["evaluate", "runs/a"]).episodes is None
    True
    """
    parser = argparse.ArgumentParser(prog="keras-meta", description="Meta-learning for Keras.")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="Meta-train MAML on sinusoid regression (no download).")
    demo.add_argument(
        "--iterations",
        type=int,
        default=None,
        help="meta-iterations (default: 15000, a few minutes on 2 CPU cores; the paper: 70000)",
    )
    demo.add_argument("--out", default="demo_output", help="output folder")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--eval-tasks", type=int, default=600)

    _add_train_parser(sub)

    ev = sub.add_parser(
        "evaluate",
        help="evaluate a run on fixed test episodes: mean ± 95%% CI",
        description=(
            "Evaluates a trained run on a fixed, seeded set of test episodes; "
            "prints each metric with its 95%% confidence interval and writes "
            "RUN_DIR/evaluation.json."
        ),
    )
    ev.add_argument("run_dir", metavar="RUN_DIR")
    ev.add_argument("--episodes", type=int, help="default: the configuration's")
    ev.add_argument("--split", choices=["test", "validation"], default="test")
    ev.add_argument("--checkpoint", choices=["final", "best"])
    ev.add_argument("--seed", type=int, help="seed of the episodes")
    ev.add_argument("--inner-steps", type=int, help="override the eval inner steps")
    ev.add_argument("--bn-mode", choices=["transductive", "running"])
    ev.add_argument("--data-dir", help="where the data is now, if it moved")
    ev.add_argument("--verbose", type=int, choices=[0, 1], default=1)

    ad = sub.add_parser(
        "adapt",
        help="adapt a run to a folder of labelled images; export a SavedModel",
        description=(
            "Adapts the learner of RUN_DIR to the images of --support (one "
            "sub-folder per class) and writes the adapted model as a "
            "SavedModel into --out, with labels.json mapping output index -> "
            "class name."
        ),
    )
    ad.add_argument("run_dir", metavar="RUN_DIR")
    ad.add_argument("--support", required=True, metavar="FOLDER")
    ad.add_argument("--out", required=True, metavar="DIR")
    ad.add_argument("--steps", type=int, help="inner steps (default: the learner's)")
    ad.add_argument("--checkpoint", choices=["final", "best"])
    inv = ad.add_mutually_exclusive_group()
    inv.add_argument(
        "--invert",
        dest="invert",
        action="store_true",
        default=None,
        help="use 1 - image (default: as in training)",
    )
    inv.add_argument("--no-invert", dest="invert", action="store_false")

    pr = sub.add_parser("presets", help="list the presets, or show one")
    pr.add_argument("name", nargs="?")
    return parser


def _train_overrides(args, parser) -> tuple[str | None, dict]:
    from keras_meta import presets

    overrides = {}
    if args.config:
        try:
            with open(args.config, encoding="utf-8") as f:
                loaded = json.load(f)
        except (OSError, ValueError) as error:
            parser.error(f"could not read --config {args.config!r}: {error}")
        if isinstance(loaded, dict) and isinstance(loaded.get("config"), dict):
            # A run directory's config.json nests the configuration.
            loaded = loaded["config"]
        if not isinstance(loaded, dict):
            parser.error(f"--config {args.config!r} must hold a JSON object")
        overrides.update(loaded)
    for option, field in _TRAIN_OPTIONS.items():
        value = getattr(args, option)
        if value is not None:
            overrides[field] = value
    if overrides.get("augmentation") == "none":
        overrides["augmentation"] = None
    preset = args.preset
    if preset is not None and preset not in presets.PRESETS:
        parser.error(
            f"unknown preset {preset!r}; the presets are: {', '.join(presets.list_presets())}"
        )
    return preset, overrides


def _print_presets(name=None):
    from keras_meta import presets

    if name:
        print(json.dumps(presets.get_preset(name), indent=2))
        return
    rows = []
    for n in presets.list_presets():
        c = presets.get_preset(n)
        ways, shots, _ = presets.eval_episode_shape(c)
        pub = c["published"] or {}
        value = pub.get("value")
        if pub.get("metric") == "accuracy" and value is not None:
            value = f"{100 * value:.2f}%"
        rows.append(
            (
                n,
                c["algorithm"],
                c["dataset"],
                f"{ways}-way {shots}-shot",
                str(c["iterations"]),
                str(value),
            )
        )
    header = ("preset", "algorithm", "dataset", "test episodes", "iterations", "published")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    for row in [header] + rows:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())


def main(argv=None) -> int:
    """Runs the `keras-meta` command line; returns the exit status.

    Example:

    >>> main(["presets"])  # doctest: +SKIP
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.command == "demo":
        from keras_meta.demo import run_demo

        run_demo(
            iterations=args.iterations,
            out_dir=args.out,
            seed=args.seed,
            eval_tasks=args.eval_tasks,
        )
        return 0
    if args.command == "presets":
        from keras_meta import presets

        if args.name and args.name not in presets.PRESETS:
            parser.error(
                f"unknown preset {args.name!r}; the presets are: "
                f"{', '.join(presets.list_presets())}"
            )
        _print_presets(args.name)
        return 0

    from keras_meta import runs

    sub_prog = f"keras-meta {args.command}"
    try:
        if args.command == "train":
            preset, overrides = _train_overrides(args, parser)
            try:
                runs.train(
                    args.out,
                    preset,
                    overrides,
                    verbose=args.verbose,
                    fail_after_epochs=args.fail_after_epochs,
                    crash_after_batches=args.crash_after_batches,
                    argv=["keras-meta"] + args.argv,
                )
            except KeyboardInterrupt:
                print(
                    f"{sub_prog}: interrupted; run the same command again to resume "
                    "from the last completed epoch",
                    file=sys.stderr,
                )
                return 130
            print(f"Trained {args.out}. Evaluate with: keras-meta evaluate {args.out}")
            return 0
        if args.command == "evaluate":
            record = runs.evaluate(
                args.run_dir,
                num_episodes=args.episodes,
                split=args.split,
                checkpoint=args.checkpoint,
                seed=args.seed,
                inner_steps=args.inner_steps,
                bn_mode=args.bn_mode,
                data_dir=args.data_dir,
                verbose=args.verbose,
            )
            results = record["results"]
            # The compiled metrics first, the loss last.
            metrics = sorted(
                (k[: -len("_ci95")] for k in results if k.endswith("_ci95")),
                key=lambda name: name == "loss",
            )
            for name in metrics:
                print(runs.format_result(results, name))
            published = record.get("published")
            if published:
                ci = published.get("ci95")
                value = published["value"]
                scale, unit = (100, "%") if published["metric"] == "accuracy" else (1, "")
                text = f"{scale * value:.4g}{unit}" + (
                    f" ± {scale * ci:.2g}{unit}" if ci is not None else ""
                )
                print(f"published {published['metric']}: {text} ({published['source']})")
            print(f"Wrote {runs.os.path.join(args.run_dir, runs.EVALUATION_FILE)}")
            return 0
        if args.command == "adapt":
            info = runs.adapt(
                args.run_dir,
                args.support,
                args.out,
                steps=args.steps,
                checkpoint=args.checkpoint,
                invert=args.invert,
            )
            print(
                f"Adapted to {len(info['labels'])} classes ({info['num_images']} "
                f"images); wrote the SavedModel and labels.json to {info['out_dir']}"
            )
            return 0
    except runs.RunError as error:
        print(f"{sub_prog}: error: {error}", file=sys.stderr)
        return 2
    return 2


if __name__ == "__main__":
    sys.exit(main())
