"""Reproduces a published few-shot result and records it in docs/results.md.

Runs a protocol of `keras_meta.experiments.protocols` (training, then the
evaluation on the protocol's fixed test episodes) and appends one row to the results table of
docs/results.md: our mean ± 95% CI, the published number, the protocol, the
training budget actually spent (iterations, wall time, machine), the split,
the augmentation and the BatchNorm mode.

    python benchmarks/reproduce.py --protocol maml-omniglot-5w1s \\
        --data-dir ../shared/data/omniglot
    python benchmarks/reproduce.py --protocol maml-sinusoid --iterations 2000
    python benchmarks/reproduce.py --protocol protonet-omniglot-5w1s \
        --from-run runs/protonet-omniglot-20w1s-20000it   # the same training

The run directory (default `runs/<preset>-<iterations>it`) is kept: running the
same command again resumes an interrupted training, or, when training is
finished, only evaluates again. `--protocols` rewrites the table of preset
protocols in docs/results.md instead.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _process_options  # noqa: E402  (the folder of this script)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO_ROOT, "docs", "results.md")
ROW_MARKER = "<!-- results:end -->"
PROTOCOLS_START = "<!-- protocols:start -->"
PROTOCOLS_END = "<!-- protocols:end -->"


def _pct(value, metric):
    return f"{100 * value:.2f}%" if metric == "accuracy" else f"{value:.3f}"


def protocol_text(config: dict) -> str:
    """A one-cell summary of a configuration's training and test protocol."""
    from keras_meta.experiments import RunConfig

    ways, shots, queries = RunConfig.from_dict(config).eval_episode_shape
    parts = [config["algorithm"]]
    if config["dataset"] == "sinusoid":
        parts.append(f"K={config['shots']} train, K={shots} test, {queries} test queries")
    else:
        parts.append(
            f"train {config['ways']}-way {config['shots']}-shot "
            f"{config['queries']} q/class; test {ways}-way {shots}-shot "
            f"{queries} q/class"
        )
    parts.append(f"meta-batch {config['meta_batch_size']}")
    if config["algorithm"] != "protonet":
        steps = config["inner_steps"]
        eval_steps = config["eval_inner_steps"] or steps
        inner = (
            f"inner {config['inner_optimizer']} lr {config['inner_learning_rate']:g}, "
            f"{steps} step{'s' * (steps != 1)} (test {eval_steps})"
        )
        if config["inner_batch_size"]:
            inner += f", batch {config['inner_batch_size']}"
        parts.append(inner)
    schedule = {
        "step": f", halved every {config['lr_decay_steps']}",
        "linear": ", linearly to 0",
    }.get(config["lr_schedule"], "")
    parts.append(f"{config['optimizer']} {config['meta_learning_rate']:g}{schedule}")
    if config["model"] == "conv4":
        parts.append(f"conv4 {config['filters']}f {config['pooling']} {config['image_size']}px")
    else:
        parts.append("MLP " + "-".join(map(str, config["hidden_units"])))
    return "; ".join(parts)


def split_text(config: dict) -> str:
    from keras_meta.experiments import protocols

    sizes = config["split_sizes"]
    if config["split"] == "mixed":
        return "1623 chars shuffled (seed {}): {}/{}/{}".format(
            config["split_seed"], *(sizes or protocols.MAML_SPLIT_SIZES)
        )
    if config["split"] == "official":
        return "background (train/val) / evaluation (test)"
    if config["split"] == "benchmark":
        return f"{config['dataset']}'s own train/validation/test classes"
    if config["split"] == "random":
        return "random classes {}/{}/{}".format(*(sizes or protocols.FOLDER_SPLIT_FRACTIONS))
    return "fresh tasks"


def protocols_table() -> str:
    """The markdown table of every protocol and its published number."""
    from keras_meta.experiments import protocols

    lines = [
        "| preset | protocol | iterations | split | augmentation | BN at test "
        "| published | source |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in protocols.list_protocols():
        c = protocols.get_protocol(name).to_dict()
        pub = c["published"]
        value = _pct(pub["value"], pub["metric"])
        if pub.get("ci95") is not None:
            value += " ± " + _pct(pub["ci95"], pub["metric"])
        lines.append(
            f"| `{name}` | {protocol_text(c)} | {c['iterations']} | {split_text(c)} "
            f"| {c['augmentation'] or 'none'} | {c['bn_mode']} "
            f"| {pub.get('unit', pub['metric'])} "
            f"{value} | {pub['source']} |"
        )
    return "\n".join(lines)


def result_row(config: dict, record: dict, state: dict, run_dir: str) -> str:
    """One markdown row of the results table."""
    from keras_meta.experiments import protocols

    pub = config["published"] or {"metric": "accuracy", "value": None}
    metric = pub["metric"]
    results = record["results"]
    ours = f"{_pct(results[metric], metric)} ± {_pct(results[metric + '_ci95'], metric)}"
    published = "–"
    if pub.get("value") is not None:
        published = _pct(pub["value"], metric)
        if pub.get("ci95") is not None:
            published += " ± " + _pct(pub["ci95"], metric)
    preset_iterations = (
        protocols.get_protocol(config["name"]).iterations
        if config["name"] in protocols.PROTOCOLS
        else config["iterations"]
    )
    done = state.get("iterations_done", 0)
    budget = f"{done} it"
    if done < preset_iterations:
        budget += f" (**{100 * done / preset_iterations:.1f}% of the protocol's "
        budget += f"{preset_iterations}**)"
    machine = record["machine"]
    devices = "+".join(machine["devices"])
    budget += (
        f", {state.get('train_seconds', 0) / 60:.1f} min on "
        f"{machine['cpu_count']} CPUs ({devices}), TF {machine['tensorflow']}"
    )
    if record.get("protocol") and record.get("trained_as") != config["name"]:
        budget += f"; the `{record['trained_as']}` run's learner (the same training)"
    date = record["evaluated"][:10]
    return (
        f"| {date} | `{config['name']}` | {pub.get('unit', metric)} {ours} "
        f"({record['results']['num_episodes']} {record['split']} episodes, "
        f"{record['checkpoint']} checkpoint) | {published} | {protocol_text(config)} "
        f"| {budget} | {split_text(config)} | {config['augmentation'] or 'none'} "
        f"| {record['results']['bn_mode']} | {commit_text(record, state)} |"
    )


def _short(commit: str) -> str:
    return "unknown" if commit == "unknown" else f"`{commit[:7]}{commit[40:]}`"


def commit_text(record: dict, state: dict) -> str:
    """The commits of the row's code: the one that tested, those that trained.

    A run resumed across sessions may have been trained by several commits;
    `run.json` lists each from the first epoch it trained (runs older than
    that record start with the first session that recorded it).
    """
    tested = record["machine"].get("keras_meta_commit", "unknown")
    text = f"test {_short(tested)}"
    commits = state.get("commits") or []
    if not commits:
        return text + "; training's not recorded"
    parts = []
    if commits[0]["from_epoch"] > 1:
        parts.append(f"epochs 1–{commits[0]['from_epoch'] - 1} not recorded")
    for i, entry in enumerate(commits):
        last = commits[i + 1]["from_epoch"] - 1 if i + 1 < len(commits) else state.get(
            "epochs_done", entry["from_epoch"])
        epochs = (f"epoch {last}" if last == entry["from_epoch"]
                  else f"epochs {entry['from_epoch']}–{last}")
        parts.append(f"{epochs} {_short(entry['commit'])}")
    return text + "; train " + ", ".join(parts)


def _replace_between(text, start, end, body):
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{body}\n{end}{tail}"


def append_row(row: str, path: str = RESULTS):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if ROW_MARKER not in text:
        raise SystemExit(f"{path} has no {ROW_MARKER} line to insert rows before")
    text = text.replace(ROW_MARKER, f"{row}\n{ROW_MARKER}", 1)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def write_protocols(path: str = RESULTS):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    text = _replace_between(text, PROTOCOLS_START, PROTOCOLS_END, protocols_table())
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--protocol", "--preset", dest="preset", help="the protocol to run")
    parser.add_argument("--iterations", type=int, help="training budget (default: the protocol's)")
    parser.add_argument("--data-dir", help="Omniglot: the folder with the two archives")
    parser.add_argument("--out", help="run directory (default: runs/<preset>-<iterations>it)")
    parser.add_argument("--episodes", type=int, help="test episodes (default: the protocol's)")
    parser.add_argument("--results", default=RESULTS, help="the markdown file to append to")
    parser.add_argument("--no-record", action="store_true", help="do not write the results file")
    parser.add_argument(
        "--protocols",
        action="store_true",
        help="rewrite the protocols table of the results file and exit",
    )
    parser.add_argument(
        "--from-run",
        metavar="RUN_DIR",
        help="do not train: test this finished run as --protocol tests (its training must be "
        "the protocol's, e.g. a protonet-omniglot-20w1s run for protonet-omniglot-5w1s)",
    )
    parser.add_argument("--verbose", type=int, default=1, choices=[0, 1, 2])
    _process_options.add(parser)
    args = parser.parse_args(argv)

    _process_options.apply(args, parser)
    from keras_meta.experiments import protocols, run_dir, runs

    if args.protocols:
        write_protocols(args.results)
        print(f"Rewrote the protocols table of {args.results}")
        return 0
    if not args.preset:
        parser.error("--protocol is required")
    if args.preset not in protocols.PROTOCOLS:
        parser.error(
            f"unknown protocol {args.preset!r}; the protocols are: "
            f"{', '.join(protocols.list_protocols())}"
        )
    if args.from_run:
        return _from_run(args, parser)
    iterations = args.iterations or protocols.get_protocol(args.preset).iterations
    out = args.out or os.path.join(REPO_ROOT, "runs", f"{args.preset}-{iterations}it")
    overrides = {"iterations": iterations}
    if args.data_dir:
        overrides["data_dir"] = os.path.abspath(args.data_dir)
    finished = run_dir.run_state(out).get("finished", False)
    try:
        if not finished:
            state = runs.train(
                out,
                args.preset,
                overrides,
                verbose=args.verbose,
                argv=["benchmarks/reproduce.py"] + list(sys.argv[1:]),
                time_limit=args.time_limit,
            )
            if not state.get("finished", True):
                print(f"reproduce.py: stopped at the time limit after {state['epochs_done']} "
                      "epochs; run the same command again to resume", file=sys.stderr)
                from keras_meta.cli import EXIT_TIME_LIMIT

                return EXIT_TIME_LIMIT
        # The data may have moved since the run started (a run resumed in
        # another session, another checkout): test where it is now.
        record = runs.evaluate(
            out,
            num_episodes=args.episodes,
            data_dir=overrides.get("data_dir"),
            verbose=args.verbose,
        )
    except run_dir.RunError as error:
        print(f"reproduce.py: error: {error}", file=sys.stderr)
        return 2
    row = result_row(run_dir.run_config(out).to_dict(), record, run_dir.run_state(out), out)
    print(row)
    if not args.no_record:
        append_row(row, args.results)
        print(f"Appended to {args.results}")
    return 0


def _from_run(args, parser) -> int:
    from keras_meta.experiments import run_dir, runs

    if args.iterations or args.out:
        parser.error("--from-run tests a trained run: --iterations and --out do not apply")
    try:
        state = run_dir.run_state(args.from_run)
        if not state.get("finished"):
            raise run_dir.RunError(
                f"{args.from_run!r} has not finished training; resume it with its own "
                "protocol first"
            )
        record = runs.evaluate(
            args.from_run,
            num_episodes=args.episodes,
            protocol=args.preset,
            data_dir=os.path.abspath(args.data_dir) if args.data_dir else None,
            verbose=args.verbose,
        )
        config = runs.protocol_config(run_dir.run_config(args.from_run), args.preset)
    except run_dir.RunError as error:
        print(f"reproduce.py: error: {error}", file=sys.stderr)
        return 2
    row = result_row(config.to_dict(), record, state, args.from_run)
    print(row)
    if not args.no_record:
        append_row(row, args.results)
        print(f"Appended to {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
