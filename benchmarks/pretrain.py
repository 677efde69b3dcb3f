"""Meta-trains a pretrained learner of `keras_meta.presets` and writes its package files.

    python benchmarks/pretrain.py --name protonet_omniglot --data-dir ../shared/data/omniglot
    python benchmarks/pretrain.py --name maml_omniglot_5way --iterations 800 \\
        --data-dir ../shared/data/omniglot

Trains through the project's own training path (`keras_meta.experiments.runs.train`,
what `keras-meta train` runs) with the settings of the preset's protocol, on
Omniglot's official split with no validation (`val_episodes=0`), so that every
character of the 30 background alphabets trains and the 20 evaluation alphabets
stay unseen. Then evaluates the final learner on fixed episodes of the
evaluation alphabets (mean ± 95% CI) and writes `model.weights.h5` (float32,
weights only) and `metadata.json` (configuration, budget actually spent vs the
protocol's, wall time, machine, commit, evaluation) into
`keras_meta/pretrained/NAME/` (or `--out`).

The run directory (default `runs/pretrain/NAME`) is an ordinary run directory:
running the same command again resumes an interrupted training, or, when
training is finished, only evaluates and writes the files again.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _process_options  # noqa: E402  (the folder of this script)
from reproduce import RESULTS, _replace_between, commit_text  # noqa: E402

TABLE_START = "<!-- pretrained:start -->"
TABLE_END = "<!-- pretrained:end -->"

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# name -> (protocol, configuration overrides, evaluation episodes as (ways, shots, queries)).
PRESETS = {
    "protonet_omniglot": (
        "protonet-omniglot-20w1s",
        # 60-way 1-shot training on all 964 background characters x 4 rotations.
        {"split": "official", "split_sizes": None, "val_episodes": 0, "checkpoint": "final"},
        ((5, 1, 15), (20, 1, 15)),
    ),
    "maml_omniglot_5way": (
        "maml-omniglot-5w1s",
        {"split": "official", "split_sizes": None, "val_episodes": 0, "checkpoint": "final"},
        ((5, 1, 1),),
    ),
}
DESCRIPTIONS = {
    "protonet_omniglot": (
        "ProtoNet conv4 meta-trained on all 964 characters of Omniglot's background "
        "alphabets (rotations as classes); any number of classes at test."
    ),
    "maml_omniglot_5way": (
        "MAML conv4 (strided, transductive BatchNorm) meta-trained 5-way 1-shot on "
        "Omniglot's background alphabets; 5 outputs."
    ),
}

# The configuration's `notes` (the protocol's speak of its own split).
NOTES = (
    "The protocol's settings on Omniglot's official split without validation "
    "(val_episodes=0): every character of the 30 background alphabets trains, the 20 "
    "evaluation alphabets are the test classes. budget.iterations says how much of the "
    "protocol's budget was spent."
)


def evaluate_on_evaluation_alphabets(config, learner, shapes, num_episodes, seed) -> dict:
    """`{"5way1shot": results, ...}` on episodes of Omniglot's evaluation alphabets."""
    from keras_meta.evaluation import evaluate
    from keras_meta.experiments.sources import EpisodeSource

    out = {}
    for ways, shots, queries in shapes:
        shaped = config.override(eval_ways=ways, eval_shots=shots, eval_queries=queries)
        # split="test" of the official split: the 20 evaluation alphabets.
        episodes = EpisodeSource(shaped).fixed("test", num_episodes, seed)
        results = evaluate(learner, episodes, num_episodes)
        out[f"{ways}way{shots}shot"] = {
            "accuracy": round(float(results["accuracy"]), 4),
            "accuracy_ci95": round(float(results["accuracy_ci95"]), 4),
            "loss": round(float(results["loss"]), 4),
            "episodes": num_episodes,
            "ways": ways,
            "shots": shots,
            "queries": queries,
            "classes": "Omniglot evaluation alphabets (unseen in training)",
            "seed": seed,
        }
        print(f"{ways}-way {shots}-shot: {100 * results['accuracy']:.2f}% ± "
              f"{100 * results['accuracy_ci95']:.2f}% ({num_episodes} episodes)")
    return out


def evaluate_per_alphabet(config, learner, shape, num_episodes, seed) -> dict:
    """Accuracy on episodes drawn within each evaluation alphabet: `{alphabet: {...}}`.

    Characters of one alphabet look alike, so these episodes (what `keras-meta
    demo omniglot` shows a user) are harder than the mixed-alphabet ones.
    """
    from keras_meta import data
    from keras_meta.evaluation import evaluate
    from keras_meta.experiments.sources import _channels

    ways, shots, queries = shape
    images, labels, info = data.omniglot(
        config.data_dir, split="evaluation", image_size=config.image_size, with_info=True
    )
    images = _channels(images, config.color_mode)
    out = {}
    for alphabet in sorted(set(info["alphabet"].tolist())):
        keep = np.isin(labels, np.flatnonzero(info["alphabet"] == alphabet))
        sampler = data.EpisodeSampler(
            images[keep], labels[keep], ways=ways, shots=shots, queries=queries,
            seed=seed, num_episodes=num_episodes,
        )  # fmt: skip
        results = evaluate(learner, sampler.dataset(), num_episodes)
        out[alphabet] = {
            "accuracy": round(float(results["accuracy"]), 4),
            "accuracy_ci95": round(float(results["accuracy_ci95"]), 4),
            "characters": int(np.sum(info["alphabet"] == alphabet)),
        }
        print(f"  {alphabet}: {100 * results['accuracy']:.2f}% ± "
              f"{100 * results['accuracy_ci95']:.2f}%")
    return {
        "ways": ways, "shots": shots, "queries": queries, "episodes": num_episodes,
        "seed": seed, "alphabets": out,
    }  # fmt: skip


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", choices=sorted(PRESETS))
    parser.add_argument("--data-dir", help="the Omniglot folder")
    parser.add_argument(
        "--table",
        action="store_true",
        help="rewrite the pretrained learners' table of docs/results.md from the package's "
        "metadata and exit (done after every run that writes into the package)",
    )
    parser.add_argument("--results", default=RESULTS, help="the markdown file of --table")
    parser.add_argument("--iterations", type=int, help="default: the protocol's full budget")
    parser.add_argument(
        "--steps-per-epoch", type=int, help="checkpoint cadence (default: the protocol's)"
    )
    parser.add_argument("--run-dir", help="default: runs/pretrain/NAME")
    parser.add_argument("--out", help="default: keras_meta/pretrained/NAME of this repository")
    parser.add_argument("--episodes", type=int, default=600, help="evaluation episodes")
    parser.add_argument(
        "--alphabet-episodes", type=int, default=100,
        help="5-way episodes drawn within each evaluation alphabet (0: none)",
    )  # fmt: skip
    parser.add_argument("--verbose", type=int, choices=[0, 1, 2], default=2)
    _process_options.add(parser)
    args = parser.parse_args(argv)

    if args.table:
        write_table(args.results)
        print(f"Rewrote the pretrained learners' table of {args.results}")
        return 0
    if not args.name or not args.data_dir:
        parser.error("--name and --data-dir are required")
    _process_options.apply(args, parser)
    from keras_meta._source import source_commit
    from keras_meta.experiments import RunConfig
    from keras_meta.experiments import run_dir as files
    from keras_meta.experiments.runs import load_run, train

    protocol, overrides, shapes = PRESETS[args.name]
    overrides = dict(overrides, data_dir=os.path.abspath(args.data_dir))
    full_budget = RunConfig.from_protocol(protocol).iterations
    if args.iterations is not None:
        overrides["iterations"] = args.iterations
    if args.steps_per_epoch is not None:
        overrides["steps_per_epoch"] = args.steps_per_epoch
    run_dir = args.run_dir or os.path.join("runs", "pretrain", args.name)
    if not files.run_state(run_dir).get("finished"):
        state = train(
            run_dir, protocol, overrides, verbose=args.verbose, time_limit=args.time_limit,
            argv=["benchmarks/pretrain.py"] + list(sys.argv[1:] if argv is None else argv),
        )
        if not state.get("finished", True):
            print(f"pretrain.py: stopped at the time limit after {state['epochs_done']} "
                  "epochs; run the same command again to resume", file=sys.stderr)
            from keras_meta.cli import EXIT_TIME_LIMIT

            return EXIT_TIME_LIMIT
    config, learner = load_run(run_dir, "final")
    state = files.run_state(run_dir)
    # Overrides the stored folder: the data may have moved since training.
    config = config.override(data_dir=os.path.abspath(args.data_dir))
    evaluation = evaluate_on_evaluation_alphabets(
        config, learner, shapes, args.episodes, seed=config.seed + 2
    )
    per_alphabet = None
    if args.alphabet_episodes:
        print(f"Within each evaluation alphabet ({args.alphabet_episodes} episodes each):")
        per_alphabet = evaluate_per_alphabet(
            config, learner, shapes[0], args.alphabet_episodes, seed=config.seed + 3
        )
    done = int(state.get("iterations_done", 0))
    metadata = {
        "name": args.name,
        "description": DESCRIPTIONS[args.name],
        "protocol": protocol,
        "training_data": (
            "Omniglot background alphabets (official split), all characters; no validation"
        ),
        "budget": {
            "iterations": done,
            "protocol_iterations": full_budget,
            "fraction": round(done / full_budget, 4),
            "short": done < full_budget,
        },
        "wall_seconds": round(float(state.get("train_seconds", 0.0)), 1),
        "machine": files.machine_info(),
        # The code that evaluated and wrote these files, and each commit that
        # trained them (a pretraining spans sessions).
        "commit": source_commit(),
        "training_commits": state.get("commits", []),
        "date": state.get("finished_at") or files.now(),
        "evaluation": evaluation,
    }
    if per_alphabet is not None:
        metadata["evaluation_per_alphabet"] = per_alphabet
    out = args.out or os.path.join(REPO_ROOT, "keras_meta", "pretrained", args.name)
    from keras_meta import presets

    written = presets.save_pretrained(learner, config.override(notes=NOTES), out, metadata)
    print(f"Wrote {written['weights']} ({os.path.getsize(written['weights'])} bytes) and "
          f"{written['metadata']}")
    if args.out is None:
        write_table(args.results)
        print(f"Rewrote the pretrained learners' table of {args.results}")
    return 0


def _duration(seconds: float) -> str:
    minutes = seconds / 60
    return f"{minutes:.1f} min" if minutes < 120 else f"{minutes / 60:.1f} h"


def table_row(meta: dict) -> str:
    """One markdown row of the pretrained learners' table, from a learner's metadata."""
    config = meta["config"]
    budget = meta["budget"]
    spent = f"{budget['iterations']} it"
    if budget["short"]:
        spent += f" (**{100 * budget['fraction']:.2g}% of {budget['protocol_iterations']}**)"
    else:
        spent += " (the protocol's full budget)"
    cells = []
    for ways in (5, 20):
        result = meta["evaluation"].get(f"{ways}way1shot")
        if result is None:
            outputs = meta["build"]["model"]["kwargs"].get("num_outputs")
            cells.append(f"— ({outputs} outputs)" if outputs else "—")
        else:
            cells.append(f"{result['accuracy']:.2%} ± {result['accuracy_ci95']:.2%} "
                         f"({result['queries']} q/class)")
    # Metadata written before commits were recorded per epoch has only `commit`.
    steps = config["steps_per_epoch"]
    commits = commit_text(
        {"machine": {"keras_meta_commit": meta.get("commit", "unknown")}},
        {"commits": meta.get("training_commits", []),
         "epochs_done": -(-budget["iterations"] // steps)},
    )  # fmt: skip
    return (
        f"| `{meta['name']}` | `{meta['protocol']}` ({config['ways']}-way training, "
        f"{config['bn_mode']} BN) | {spent} | {_duration(meta['wall_seconds'])} | "
        f"{cells[0]} | {cells[1]} | {commits} |"
    )


def pretrained_table() -> str:
    """The pretrained learners' table of docs/results.md, from the package's metadata."""
    from keras_meta import presets

    lines = [
        "| pretrained | protocol | budget | wall time | 5-way 1-shot | 20-way 1-shot | commit |",
        "|---|---|---|---|---|---|---|",
    ]
    names = presets.list_pretrained()
    lines += [table_row(presets.get_metadata(name)) for name in names]
    lines += [
        "",
        "Within one evaluation alphabet (episodes of characters that look alike, what",
        "`keras-meta demo omniglot` draws):",
        "",
        "| pretrained | episodes | lowest alphabet | median | highest alphabet | mean of the "
        "alphabets |",
        "|---|---|---|---|---|---|",
    ]
    lines += [alphabet_row(presets.get_metadata(name)) for name in names]
    return "\n".join(lines)


def alphabet_row(meta: dict) -> str:
    """One markdown row of the per-alphabet table, from a learner's metadata."""
    result = meta.get("evaluation_per_alphabet")
    if result is None:
        return f"| `{meta['name']}` | not measured | | | | |"
    scores = sorted((r["accuracy"], name) for name, r in result["alphabets"].items())
    accuracies = [a for a, _ in scores]
    return (
        f"| `{meta['name']}` | {result['ways']}-way {result['shots']}-shot, "
        f"{result['queries']} q/class, {result['episodes']} per alphabet | "
        f"{scores[0][0]:.1%} ({scores[0][1]}) | {np.median(accuracies):.1%} | "
        f"{scores[-1][0]:.1%} ({scores[-1][1]}) | {np.mean(accuracies):.1%} |"
    )


def write_table(path: str = RESULTS) -> None:
    with open(path, encoding="utf-8") as f:
        text = f.read()
    for marker in (TABLE_START, TABLE_END):
        if marker not in text:
            raise SystemExit(f"{path} has no {marker} line")
    text = _replace_between(text, TABLE_START, TABLE_END, pretrained_table())
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


if __name__ == "__main__":
    sys.exit(main())
