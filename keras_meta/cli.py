"""The `keras-meta` command line.

```
keras-meta train --protocol maml-omniglot-5w1s --data-dir DATA --out runs/maml
keras-meta train ... --strategy multi-worker     # on each worker, with TF_CONFIG
keras-meta train ... --threads 1                 # one intra-op thread (two runs share 2 cores)
keras-meta train ... --onednn on                # oneDNN kernels: ProtoNet 2.3x faster on CPU
keras-meta train ... --time-limit 3h             # stop after the last epoch that fits; exit 75
keras-meta evaluate runs/maml --episodes 600
keras-meta evaluate runs/mini --dataset cub       # cross-domain: another dataset's classes
keras-meta evaluate runs/pn --protocol protonet-omniglot-5w1s  # another protocol's test
keras-meta adapt runs/maml --support my_classes/ --out adapted/
keras-meta adapt --pretrained protonet_omniglot --support my_alphabet/ --out adapted/
keras-meta protocols [NAME]
keras-meta pretrained [NAME]
keras-meta demo
keras-meta demo omniglot --data-dir DATA
```

See `docs/cli.md`. The work is done by `keras_meta.experiments.runs`; this
module only parses arguments and prints results. The `train` options are
generated from the fields of `keras_meta.experiments.RunConfig`. (Near 630
lines: the parsers of all seven commands, kept together so that building the
parser imports no TensorFlow.)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys

# keras_meta.distribute.STRATEGIES, written out so that building the parser
# does not import TensorFlow (tests/cli/test_cli_strategy.py checks they agree).
STRATEGIES = ("none", "mirrored", "multi-worker")
DEMOS = ("sinusoid", "omniglot")
# The options of each demo (the parser's defaults are None, so that an
# option given to the other demo is an error).
# `keras-meta train --time-limit` stopped before the last epoch: the run is
# unfinished and resumes when run again (sysexits' EX_TEMPFAIL, "try again").
EXIT_TIME_LIMIT = 75
DEMO_OPTIONS = {
    "sinusoid": ("iterations", "eval_tasks"),
    "omniglot": ("data_dir", "images", "alphabet", "ways"),
}


def _integer(name: str, minimum: int | None = 1):
    """An argparse type: an integer >= `minimum`, checked by keras_meta.validation."""
    from keras_meta import validation

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"`{name}` must be an integer >= {minimum}; received {text!r}."
            ) from None
        try:
            return validation.check_int(name, value, minimum)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    parse.__name__ = name
    return parse


_DURATION_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600}
_DURATION_PART = r"(\d+(?:\.\d*)?|\.\d+)\s*(h|min|m|s)"


def duration(text: str) -> float:
    """Seconds in `text`: a bare number of seconds, or numbers with units `h`,
    `m` (or `min`) and `s`, alone or together (`2h10m`, `1h 30m`).

    Example:

    >>> duration("1.5h"), duration("90m"), duration("45"), duration("2h10m")
    (5400.0, 5400.0, 45.0, 7800.0)
    """
    text = str(text).strip()
    seconds = 0.0
    if re.fullmatch(r"\d+(?:\.\d*)?|\.\d+", text):
        seconds = float(text)
    elif re.fullmatch(rf"(?:{_DURATION_PART}\s*)+", text):
        parts = re.findall(_DURATION_PART, text)
        units = [unit for _, unit in parts]
        # Each unit once, largest first: "10m2h" or "5m5m" is more likely a typo
        # than a duration.
        order = [_DURATION_UNITS[unit] for unit in units]
        if len(set(order)) == len(order) and order == sorted(order, reverse=True):
            seconds = sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts)
    if seconds <= 0:
        raise argparse.ArgumentTypeError(
            "a duration must be a positive number of seconds, or numbers with the units "
            f"h, m and s, largest first (e.g. 600, 45m, 2.5h, 2h10m); received {text!r}"
        )
    return seconds


def _threads_parser() -> argparse.ArgumentParser:
    """The `--threads` and `--onednn` options shared by the commands that run
    TensorFlow."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--onednn",
        choices=("on", "off"),
        help=(
            "TensorFlow's oneDNN CPU kernels (TF_ENABLE_ONEDNN_OPTS; default: TensorFlow's "
            "choice, on only for CPUs with AVX512-VNNI/BF16 or AMX). Measured on an AVX2 "
            "CPU: ProtoNet ~2.3x faster with them, MAML ~1.6x slower (docs/performance.md). The "
            "command runs again in a process with the setting when it differs"
        ),
    )
    common.add_argument(
        "--threads",
        type=_integer("threads"),
        metavar="N",
        help=(
            "threads of each TensorFlow op (tf.config.threading intra-op parallelism; "
            "default: one per core). 1 spends the least CPU time on MAML's small "
            "convolutions and lets several runs share a machine (docs/performance.md). "
            "Not stored: a run may resume with another value"
        ),
    )
    return common


def _add_train_parser(sub, common):
    from keras_meta.experiments.options import add_config_options

    p = sub.add_parser(
        "train",
        parents=[common],
        help="meta-train a learner into a run directory (resumes an unfinished one)",
        description=(
            "Meta-trains a learner. A --protocol pins a published protocol; "
            "options override its fields. Running the same command again "
            "resumes an interrupted run at its last completed epoch."
        ),
    )
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory")
    p.add_argument("--protocol", help="a published protocol (see `keras-meta protocols`)")
    p.add_argument("--preset", help="the former name of --protocol")
    p.add_argument("--config", metavar="JSON", help="a configuration file to start from")
    add_config_options(p)
    p.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default="none",
        help=(
            "tf.distribute strategy: none (one device), mirrored (this machine's GPUs), "
            "multi-worker (the workers of TF_CONFIG; see docs/distributed.md). "
            "--meta-batch-size is the global batch. Not stored: a run may resume "
            "under another strategy"
        ),
    )
    p.add_argument(
        "--time-limit",
        type=duration,
        metavar="DURATION",
        help=(
            "stop at the end of the last epoch that fits in this time (e.g. 45m, 2h10m; "
            "at the pace of the epoch before) and exit with status 75; the same "
            "command resumes the run"
        ),
    )
    p.add_argument("--verbose", type=int, choices=[0, 1, 2], default=1)
    # Interrupts training after N epochs: tests resumption end to end.
    p.add_argument(
        "--fail-after-epochs", type=_integer("fail_after_epochs"), help=argparse.SUPPRESS
    )
    # Kills the process after N training batches: tests a crash mid-epoch.
    p.add_argument(
        "--crash-after-batches", type=_integer("crash_after_batches"), help=argparse.SUPPRESS
    )
    return p


def build_parser() -> argparse.ArgumentParser:
    """The `keras-meta` argument parser.

    Example:

    >>> build_parser().parse_args(["evaluate", "runs/a"]).episodes is None
    True
    """
    from keras_meta.experiments.datasets import DATASETS

    parser = argparse.ArgumentParser(prog="keras-meta", description="Meta-learning for Keras.")
    sub = parser.add_subparsers(dest="command", required=True)
    common = _threads_parser()

    demo = sub.add_parser(
        "demo",
        parents=[common],
        help="Meta-train MAML on sinusoid regression (no download); `demo omniglot`: adapt "
        "the pretrained protonet_omniglot learner to unseen characters",
    )
    demo.add_argument(
        "task", nargs="?", choices=DEMOS, default="sinusoid",
        help="sinusoid (default): meta-train MAML; omniglot: adapt a pretrained learner",
    )
    demo.add_argument(
        "--iterations",
        type=_integer("iterations"),
        default=None,
        help="sinusoid: meta-iterations (default: 15000, a few minutes on 2 CPU cores; the "
        "paper: 70000)",
    )
    demo.add_argument("--out", default="demo_output", help="output folder")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--eval-tasks", type=_integer("eval_tasks", 2), default=None,
                      help="sinusoid: test tasks (default: 600)")
    demo.add_argument("--data-dir", metavar="DIR",
                      help="omniglot: the Omniglot folder (official archives or extracted)")
    demo.add_argument("--images", metavar="FOLDER",
                      help="omniglot: any folder of character images, one sub-folder per class")
    demo.add_argument("--alphabet", help="omniglot: the evaluation alphabet (default: random)")
    demo.add_argument("--ways", type=_integer("ways", 2), default=None,
                      help="omniglot: characters to tell apart (default: 5)")

    _add_train_parser(sub, common)

    ev = sub.add_parser(
        "evaluate",
        parents=[common],
        help="evaluate a run on fixed test episodes: mean ± 95%% CI",
        description=(
            "Evaluates a trained run on a fixed, seeded set of test episodes; "
            "prints each metric with its 95%% confidence interval and writes "
            "RUN_DIR/evaluation.json."
        ),
    )
    ev.add_argument("run_dir", metavar="RUN_DIR")
    ev.add_argument("--episodes", type=_integer("episodes"), help="default: the configuration's")
    ev.add_argument("--split", choices=["test", "validation"], default="test")
    ev.add_argument("--checkpoint", choices=["final", "best"])
    ev.add_argument("--seed", type=int, help="seed of the episodes")
    ev.add_argument(
        "--inner-steps", type=_integer("inner_steps"), help="override the eval inner steps"
    )
    ev.add_argument("--bn-mode", choices=["transductive", "running"])
    ev.add_argument(
        "--dataset",
        choices=DATASETS,
        help="evaluate on this dataset's test classes instead of the run's (cross-domain; "
        "episodes of the run's shape, images at the learner's size); writes "
        "RUN_DIR/evaluation_<dataset>.json",
    )
    ev.add_argument(
        "--data-dir",
        help="where the data is now, if it moved; with --dataset, that dataset's --data-dir",
    )
    ev.add_argument(
        "--protocol",
        metavar="NAME",
        help="test as this protocol tests (its test episodes and published number): allowed "
        "when it trains what the run trained, e.g. a protonet-omniglot-20w1s run as "
        "protonet-omniglot-5w1s; writes RUN_DIR/evaluation_<NAME>.json",
    )
    ev.add_argument(
        "--adapted-model",
        action="store_true",
        help="also score the adapted model that `adapt` exports (adapted_* results)",
    )
    ev.add_argument("--verbose", type=int, choices=[0, 1], default=1)

    ad = sub.add_parser(
        "adapt",
        parents=[common],
        help="adapt a run to a folder of labelled images; export a SavedModel",
        description=(
            "Adapts the learner of RUN_DIR to the images of --support (one "
            "sub-folder per class) and writes the adapted model as a "
            "SavedModel into --out, with labels.json mapping output index -> "
            "class name."
        ),
    )
    ad.add_argument("run_dir", metavar="RUN_DIR", nargs="?",
                    help="a trained run (or give --pretrained)")
    ad.add_argument("--pretrained", metavar="NAME",
                    help="adapt a pretrained learner instead of a run (see `keras-meta "
                    "pretrained`); no training, no download")
    ad.add_argument("--support", required=True, metavar="FOLDER")
    ad.add_argument("--out", required=True, metavar="DIR")
    ad.add_argument(
        "--steps", type=_integer("steps"), help="inner steps (default: the learner's)"
    )
    ad.add_argument("--checkpoint", choices=["final", "best"])
    ad.add_argument(
        "--batch-norm",
        choices=["support", "transductive", "running"],
        help="how the exported model's BatchNorm normalises (default: per example: the "
        "support set's statistics for a transductive learner, else the moving ones)",
    )
    inv = ad.add_mutually_exclusive_group()
    inv.add_argument(
        "--invert",
        dest="invert",
        action="store_true",
        default=None,
        help="use 1 - image (default: as in training)",
    )
    inv.add_argument("--no-invert", dest="invert", action="store_false")

    for name, text in (("protocols", "list the published protocols, or show one"),
                       ("presets", "the former name of `protocols`"),
                       ("pretrained", "list the pretrained learners, or show one's metadata")):
        pr = sub.add_parser(name, help=text)
        pr.add_argument("name", nargs="?")
    return parser


def _train_overrides(args, parser) -> tuple[str | None, dict]:
    from keras_meta.experiments import protocols
    from keras_meta.experiments.options import config_overrides

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
    overrides.update(config_overrides(args))
    if args.preset is not None and args.protocol is not None:
        parser.error("give --protocol or its former name --preset, not both")
    protocol = args.protocol if args.protocol is not None else args.preset
    if protocol is not None and protocol not in protocols.PROTOCOLS:
        word = "preset" if args.preset is not None else "protocol"
        parser.error(
            f"unknown {word} {protocol!r}; the protocols are: "
            f"{', '.join(protocols.list_protocols())}"
        )
    return protocol, overrides


def _print_protocols(name=None):
    from keras_meta.experiments import protocols

    if name:
        print(json.dumps(protocols.get_protocol(name).to_dict(), indent=2))
        return
    rows = []
    for n in protocols.list_protocols():
        c = protocols.get_protocol(n)
        ways, shots, _ = c.eval_episode_shape
        pub = c.published or {}
        value = pub.get("value")
        if pub.get("metric") == "accuracy" and value is not None:
            value = f"{100 * value:.2f}%"
        rows.append(
            (n, c.algorithm, c.dataset, f"{ways}-way {shots}-shot", str(c.iterations), str(value))
        )
    header = ("protocol", "algorithm", "dataset", "test episodes", "iterations", "published")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    for row in [header] + rows:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())


def format_result(results: dict, metric: str) -> str:
    """`"accuracy: 98.70% ± 0.40% (95% CI, 600 episodes)"`.

    Example:

    >>> format_result({"accuracy": 0.987, "accuracy_ci95": 0.004,
    ...                "num_episodes": 600}, "accuracy")
    'accuracy: 98.70% ± 0.40% (95% CI, 600 episodes)'
    """
    mean, half = results[metric], results[metric + "_ci95"]
    n = results["num_episodes"]
    if metric == "accuracy":
        return f"{metric}: {100 * mean:.2f}% ± {100 * half:.2f}% (95% CI, {n} episodes)"
    return f"{metric}: {mean:.4g} ± {half:.2g} (95% CI, {n} episodes)"


def _print_evaluation(record: dict) -> None:
    results = record["results"]
    # The compiled metrics first, the loss last.
    metrics = sorted(
        (k[: -len("_ci95")] for k in results if k.endswith("_ci95")),
        key=lambda name: name == "loss",
    )
    for name in metrics:
        print(format_result(results, name))
    published = record.get("published")
    if published:
        ci = published.get("ci95")
        value = published["value"]
        scale, unit = (100, "%") if published["metric"] == "accuracy" else (1, "")
        text = f"{scale * value:.4g}{unit}" + (
            f" ± {scale * ci:.2g}{unit}" if ci is not None else ""
        )
        print(f"published {published['metric']}: {text} ({published['source']})")


def _run(args, parser) -> int:
    from keras_meta.experiments import runs

    if args.command == "train":
        protocol, overrides = _train_overrides(args, parser)
        try:
            state = runs.train(
                args.out,
                protocol,
                overrides,
                verbose=args.verbose,
                fail_after_epochs=args.fail_after_epochs,
                crash_after_batches=args.crash_after_batches,
                argv=["keras-meta"] + args.argv,
                strategy=args.strategy,
                time_limit=args.time_limit,
            )
        except KeyboardInterrupt:
            print(
                "keras-meta train: interrupted; run the same command again to resume "
                "from the last completed epoch",
                file=sys.stderr,
            )
            return 130
        if args.time_limit is not None and not state.get("finished", True):
            print(
                f"keras-meta train: stopped at the time limit after "
                f"{state.get('epochs_done')} epochs; run the same command again to resume",
                file=sys.stderr,
            )
            return EXIT_TIME_LIMIT
        print(f"Trained {args.out}. Evaluate with: keras-meta evaluate {args.out}")
    elif args.command == "evaluate":
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
            with_adapted_model=args.adapted_model,
            dataset=args.dataset,
            protocol=args.protocol,
        )
        if "trained_on" in record:
            print(f"{record['trained_on']} run evaluated on {record['dataset']}:")
        if "protocol" in record:
            print(f"{record['trained_as'] or 'the'} run tested as {record['protocol']} tests:")
        _print_evaluation(record)
        written = runs.evaluation_file(
            args.run_dir, record.get("dataset"), record.get("trained_on"), record.get("protocol")
        )
        print(f"Wrote {written}")
    else:
        if (args.run_dir is None) == (args.pretrained is None):
            parser.error(
                "adapt takes either a RUN_DIR or --pretrained NAME (one of them); received "
                f"RUN_DIR={args.run_dir!r}, --pretrained={args.pretrained!r}"
            )
        if args.pretrained is not None and args.checkpoint is not None:
            parser.error(
                "--checkpoint picks a run's checkpoint; a pretrained learner has one set of "
                f"weights (received --checkpoint {args.checkpoint} with --pretrained)"
            )
        info = runs.adapt(
            args.run_dir,
            args.support,
            args.out,
            steps=args.steps,
            checkpoint=args.checkpoint,
            invert=args.invert,
            batch_norm=args.batch_norm,
            pretrained=args.pretrained,
        )
        print(
            f"Adapted to {len(info['labels'])} classes ({info['num_images']} "
            f"images); wrote the SavedModel and labels.json to {info['out_dir']}"
        )
    return 0


def _demo(args, parser) -> int:
    for task, options in DEMO_OPTIONS.items():
        given = [o for o in options if getattr(args, o) is not None]
        if task != args.task and given:
            flags = ", ".join("--" + o.replace("_", "-") for o in given)
            parser.error(f"{flags}: option(s) of `demo {task}`, not of `demo {args.task}`")
    if args.task == "omniglot" and (args.data_dir is None) == (args.images is None):
        parser.error("demo omniglot takes --data-dir DIR (the Omniglot folder) or "
                     "--images FOLDER (a folder of character images), one of them")
    from keras_meta.demo import run_demo, run_omniglot_demo
    from keras_meta.experiments.run_dir import RunError

    try:
        if args.task == "sinusoid":
            run_demo(
                iterations=args.iterations,
                out_dir=args.out,
                seed=args.seed,
                eval_tasks=600 if args.eval_tasks is None else args.eval_tasks,
            )
        else:
            run_omniglot_demo(
                data_dir=args.data_dir,
                images=args.images,
                out_dir=args.out,
                alphabet=args.alphabet,
                ways=5 if args.ways is None else args.ways,
                seed=args.seed,
            )
    except (RunError, ValueError, OSError) as error:
        print(f"keras-meta demo: error: {error}", file=sys.stderr)
        return 2
    return 0


def _pretrained(args, parser) -> int:
    from keras_meta import presets

    if args.name is None:
        for name in presets.list_pretrained():
            print(presets.describe(name))
        return 0
    if args.name not in presets.list_pretrained():
        parser.error(
            f"unknown pretrained learner {args.name!r}; the pretrained learners are: "
            f"{', '.join(presets.list_pretrained())}"
        )
    print(json.dumps(presets.get_metadata(args.name), indent=2))
    return 0


def set_threads(threads: int) -> None:
    """Runs each TensorFlow op on at most `threads` threads (intra-op parallelism).

    Must come before TensorFlow runs its first op: a `RuntimeError` that
    says so otherwise (unless the number is already `threads`). The threads
    that run independent ops side by side (inter-op, e.g. the episodes of a
    meta-batch, `parallel_episodes`) are unchanged.

    Example:

    >>> set_threads(1)  # doctest: +SKIP
    """
    import tensorflow as tf

    if tf.config.threading.get_intra_op_parallelism_threads() == threads:
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    except RuntimeError:
        raise RuntimeError(
            f"--threads {threads} must be set before TensorFlow runs its first op, and "
            "this process has started TensorFlow already (call "
            "tf.config.threading.set_intra_op_parallelism_threads at the start of the "
            "program instead)."
        ) from None


def _run_with_onednn(args, exec_: bool) -> int:
    """Runs the command again in a process whose TensorFlow has oneDNN
    `args.onednn`: TensorFlow reads the switch once, when it is imported,
    and this process has imported it. From the shell (`exec_`) the process
    is replaced; from Python, a child process runs it."""
    from keras_meta._backend import ONEDNN_ENV

    value = "1" if args.onednn == "on" else "0"
    if os.environ.get(ONEDNN_ENV) == value:
        # Already set, and still not in effect: no rerun would change it.
        print(
            f"keras-meta {args.command}: error: --onednn {args.onednn}: this TensorFlow "
            f"ignores {ONEDNN_ENV}={value} (a build without oneDNN kernels?)",
            file=sys.stderr,
        )
        return 2
    env = {**os.environ, ONEDNN_ENV: value}
    command = [sys.executable, "-m", "keras_meta.cli", *args.argv]
    if exec_ and os.name == "posix":
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, command, env)
    return subprocess.call(command, env=env)


def main(argv=None) -> int:
    """Runs the `keras-meta` command line; returns the exit status.

    Example:

    >>> main(["protocols"])  # doctest: +SKIP
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if getattr(args, "onednn", None) is not None:
        from keras_meta._backend import onednn_enabled

        if onednn_enabled() != (args.onednn == "on"):
            return _run_with_onednn(args, exec_=argv is None)
    if getattr(args, "threads", None) is not None:
        try:
            set_threads(args.threads)
        except RuntimeError as error:
            print(f"keras-meta {args.command}: error: {error}", file=sys.stderr)
            return 2
    if args.command == "demo":
        return _demo(args, parser)
    if args.command == "pretrained":
        return _pretrained(args, parser)
    if args.command in ("protocols", "presets"):
        from keras_meta.experiments import protocols

        if args.name and args.name not in protocols.PROTOCOLS:
            parser.error(
                f"unknown protocol {args.name!r}; the protocols are: "
                f"{', '.join(protocols.list_protocols())}"
            )
        _print_protocols(args.name)
        return 0

    from keras_meta.experiments.run_dir import RunError

    try:
        return _run(args, parser)
    except RunError as error:
        print(f"keras-meta {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
