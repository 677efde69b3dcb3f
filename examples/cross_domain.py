"""Cross-domain few-shot adaptation: Omniglot -> handwritten digits.

Meta-trains MAML and ProtoNet (conv4, 28x28, 5-way 1-shot) on Omniglot's
training characters (the seeded 1,100 / 100 / 423 class split of MAML's code),
then adapts them, unchanged, to scikit-learn's `load_digits`: 1,797 real 8x8
handwritten digits (10 classes, values 0..16, ink high like Omniglot's ink = 1)
scaled to [0, 1] by the sampler's `scale=16` and upsampled to 28x28 by
`keras_meta.evaluate`, which calls `km.data.match_images` when the episodes'
image shape differs from the learner's. It reports the 600-episode accuracy
with its 95% confidence interval on the digits against the number of MAML
inner steps and the number of shots (5- and 10-way), and on Omniglot's test
characters for comparison.

MAML's head has 5 outputs; for 10-way digit episodes its meta-trained body gets
a new zero-initialised 10-way head (all classes start equal, so the first
inner step is what separates them). ProtoNet needs no head and no inner steps.

    python examples/cross_domain.py ../shared/data/omniglot --minutes 20 \\
        --out cross_domain_run --plot docs/img/cross_domain.png

`--quick` trains for a few seconds and evaluates a handful of episodes, to
check that everything runs (the test suite does). `--phase train` / `--phase
eval` run the two halves separately (the learners are saved in `--out`).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import time

import keras
import numpy as np
import tensorflow as tf

import keras_meta as km
from keras_meta.evaluation import confidence_interval
from keras_meta.experiments.protocols import MAML_SPLIT_SIZES

LEARNERS = ("protonet", "maml")


class _TimeBudget(keras.callbacks.Callback):
    """Stops `fit` once `seconds` have passed (checked after every batch)."""

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = seconds
        self.batches = 0
        self.start = None

    def on_train_begin(self, logs=None):
        self.start = time.time()

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1
        if time.time() - self.start > self.seconds:
            self.model.stop_training = True


def load_omniglot(data_dir: str, seed: int):
    """The train and test classes of MAML's split of both official archives."""
    background = km.data.omniglot(data_dir, split="background")
    evaluation = km.data.omniglot(data_dir, split="evaluation")
    images = np.concatenate([background[0], evaluation[0]])
    labels = np.concatenate([background[1], evaluation[1] + background[1].max() + 1])
    split = km.data.split_classes(labels, MAML_SPLIT_SIZES, seed=seed)
    return split.select("train", images, labels), split.select("test", images, labels)


def load_digits():
    """scikit-learn's 8x8 digits as `[1797, 8, 8, 1]` values 0..16 and labels."""
    from sklearn.datasets import load_digits as sk_load_digits

    digits = sk_load_digits()
    return digits.images[..., None].astype("float32"), digits.target.astype("int64")


def build_learner(name: str, filters: int, ways: int = 5) -> keras.Model:
    if name == "maml":
        learner = km.MAML(
            km.models.conv4((28, 28, 1), ways, filters, pooling="strided", bn_scale=False),
            inner_learning_rate=0.4,
            inner_steps=1,
            eval_inner_steps=3,
        )
    else:
        learner = km.ProtoNet(km.models.conv4((28, 28, 1), filters=filters))
    learner.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return learner


def train(name: str, train_xy, args) -> dict:
    """Meta-trains one learner for `args.minutes` and saves it in `args.out`."""
    keras.utils.set_random_seed(args.seed)
    episodes = km.data.episodes(
        *train_xy, ways=5, shots=1, queries=args.train_queries, seed=args.seed,
        augment="class_rotation",
    )
    learner = build_learner(name, args.filters)
    budget = _TimeBudget(60 * args.minutes)
    start = time.time()
    learner.fit(
        episodes.batch(args.meta_batch_size).prefetch(2),
        epochs=10_000,
        steps_per_epoch=args.steps_per_epoch,
        callbacks=[budget],
        shuffle=False,
        verbose=2 if not args.quick else 0,
    )
    info = {
        "iterations": budget.batches,
        "meta_batch_size": args.meta_batch_size,
        "train_seconds": round(time.time() - start, 1),
    }
    learner.save(os.path.join(args.out, f"{name}.keras"))
    with open(os.path.join(args.out, f"{name}_train.json"), "w") as f:
        json.dump(info, f)
    print(f"{name}: {info}", flush=True)
    return info


def maml_for_ways(trained: keras.Model, ways: int, filters: int) -> keras.Model:
    """The meta-trained MAML, or its body with a zero-initialised `ways`-way head."""
    if ways == trained.model.output_shape[-1]:
        return trained
    learner = build_learner("maml", filters, ways)
    for layer in trained.model.layers:
        if layer.name != "head" and layer.weights:
            learner.model.get_layer(layer.name).set_weights(layer.get_weights())
    head = learner.model.get_layer("head")
    head.set_weights([np.zeros_like(w) for w in head.get_weights()])
    return learner


def unadapted_accuracy(learner: keras.Model, episodes) -> dict:
    """MAML's query accuracy at its initialisation (0 inner steps), per episode.

    The model normalises each query set with its own statistics, as the
    learner's transductive evaluation does.
    """
    shape = tuple(learner.model.input_shape[1:])
    # Traced once: an eager call per episode costs several times the evaluation.
    predict = tf.function(lambda query: learner.model(query, training=True), reduce_retracing=True)
    hits = []
    for x, y in km.data.match_images(episodes, shape):
        logits = predict(x["query_x"])
        hits.append(float(np.mean(np.argmax(logits, -1) == y.numpy())))
    mean, half = confidence_interval(hits)
    return {"accuracy": mean, "accuracy_ci95": half, "inner_steps": 0}


def evaluation_grid(name: str, args) -> list[dict]:
    """The rows to evaluate: in-domain Omniglot, then the digits grid."""
    rows = [
        {"domain": "omniglot", "ways": 5, "shots": shots, "steps": None}
        for shots in args.omniglot_shots
    ]
    for ways in args.ways:
        for shots in args.shots:
            steps = args.steps if name == "maml" else [None]
            rows += [{"domain": "digits", "ways": ways, "shots": shots, "steps": k} for k in steps]
    return rows


def evaluate(name: str, test_xy, args) -> list[dict]:
    """Evaluates a saved learner on the grid, appending each row to a JSON file."""
    trained = km.load_learner(os.path.join(args.out, f"{name}.keras"))
    digits_x, digits_y = load_digits()
    # One file per learner and set of ways, so that processes can split the grid.
    ways = "-".join(str(w) for w in args.ways)
    path = os.path.join(args.out, f"{name}_results_{ways}way{args.results_tag}.json")
    rows = []
    for row in evaluation_grid(name, args):
        if row["domain"] == "omniglot":
            x, y, scale = *test_xy, None
        else:
            x, y, scale = digits_x, digits_y, 16
        # The same seed for every learner and step count: the same episodes.
        episodes = km.data.episodes(
            x, y, ways=row["ways"], shots=row["shots"], queries=15, scale=scale,
            seed=1000 + 10 * row["ways"] + row["shots"], num_episodes=args.episodes,
        )
        learner = trained if name != "maml" else maml_for_ways(trained, row["ways"], args.filters)
        start = time.time()
        if row["steps"] == 0:
            result = unadapted_accuracy(learner, episodes)
        else:
            result = km.evaluate(learner, episodes, num_episodes=args.episodes,
                                 inner_steps=row["steps"])
        row = dict(
            row, learner=name, steps=result.get("inner_steps"),
            accuracy=result["accuracy"], ci95=result["accuracy_ci95"],
            episodes=args.episodes, seconds=round(time.time() - start, 1),
        )
        rows.append(row)
        print(json.dumps(row), flush=True)
        with open(path, "w") as f:
            json.dump(rows, f, indent=1)
    return rows


def read_results(out: str) -> list[dict]:
    rows = []
    for name in LEARNERS:
        for path in sorted(glob.glob(os.path.join(out, f"{name}_results_*.json"))):
            with open(path) as f:
                rows += json.load(f)
    # Processes that split the grid may repeat a cell (the same episodes): keep one.
    unique = {}
    for r in rows:
        unique.setdefault((r["learner"], r["domain"], r["ways"], r["shots"], r["steps"]), r)
    return list(unique.values())


def _label(row) -> str:
    return f"{row['ways']}-way {row['shots']}-shot"


def markdown_table(rows: list[dict]) -> str:
    """Digit accuracy (%) per episode type: one column per MAML step count, then ProtoNet."""
    digits = [r for r in rows if r["domain"] == "digits"]
    steps = sorted({r["steps"] for r in digits if r["learner"] == "maml"})
    kinds = sorted({(r["ways"], r["shots"]) for r in digits})
    header = ["digits episodes"] + [f"MAML {k} steps" for k in steps] + ["ProtoNet"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]

    def cell(r):
        return f"{100 * r['accuracy']:.1f} ± {100 * r['ci95']:.1f}" if r else "–"

    for ways, shots in kinds:
        def find(learner, k=None, ways=ways, shots=shots):
            for r in digits:
                if (r["learner"], r["ways"], r["shots"]) == (learner, ways, shots) and (
                    learner != "maml" or r["steps"] == k
                ):
                    return r
            return None

        cells = [cell(find("maml", k)) for k in steps] + [cell(find("protonet"))]
        lines.append(f"| {ways}-way {shots}-shot | " + " | ".join(cells) + " |")
    omniglot = sorted(
        (r for r in rows if r["domain"] == "omniglot"),
        key=lambda r: (r["ways"], r["shots"], r["learner"]),
    )
    if omniglot:
        lines += ["", "| Omniglot test characters | learner | accuracy (%) |", "|---|---|---|"]
        for r in omniglot:
            learner = "ProtoNet" if r["learner"] == "protonet" else f"MAML {r['steps']} steps"
            lines.append(f"| {_label(r)} | {learner} | {cell(r)} |")
    return "\n".join(lines)


def plot(rows: list[dict], path: str) -> None:
    """Accuracy vs MAML inner steps (ProtoNet dashed) and vs shots, on the digits."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    digits = [r for r in rows if r["domain"] == "digits"]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    colors = {}
    for r in sorted(digits, key=lambda r: (r["ways"], r["shots"])):
        colors.setdefault((r["ways"], r["shots"]), f"C{len(colors)}")
    for kind, color in colors.items():
        maml = sorted(
            (r for r in digits if r["learner"] == "maml" and (r["ways"], r["shots"]) == kind),
            key=lambda r: r["steps"],
        )
        if maml:
            axes[0].errorbar(
                [r["steps"] for r in maml], [100 * r["accuracy"] for r in maml],
                [100 * r["ci95"] for r in maml], color=color, marker="o", ms=3,
                capsize=2, label=f"{kind[0]}-way {kind[1]}-shot",
            )
        for r in digits:
            if r["learner"] == "protonet" and (r["ways"], r["shots"]) == kind:
                axes[0].axhline(100 * r["accuracy"], color=color, ls="--", lw=1)
    axes[0].set_xscale("symlog", linthresh=1)
    axes[0].set(xlabel="MAML inner steps (ProtoNet dashed)", ylabel="digit accuracy (%)")
    axes[0].legend(fontsize=7)
    for learner, marker in (("maml", "o"), ("protonet", "s")):
        for ways, ls in ((5, "-"), (10, ":")):
            chosen = [r for r in digits if r["learner"] == learner and r["ways"] == ways]
            if learner == "maml" and chosen:
                # The step count evaluated at the most shots (the larger on a tie).
                steps = max(
                    {r["steps"] for r in chosen},
                    key=lambda k: (sum(r["steps"] == k for r in chosen), k),
                )
                chosen = [r for r in chosen if r["steps"] == steps]
                label = f"MAML {steps} steps, {ways}-way"
            else:
                label = f"ProtoNet, {ways}-way"
            chosen.sort(key=lambda r: r["shots"])
            if chosen:
                axes[1].errorbar(
                    [r["shots"] for r in chosen], [100 * r["accuracy"] for r in chosen],
                    [100 * r["ci95"] for r in chosen], marker=marker, ls=ls, ms=3,
                    capsize=2, label=label,
                )
    axes[1].set(xlabel="shots", ylabel="digit accuracy (%)")
    axes[1].legend(fontsize=7)
    fig.suptitle("Omniglot-trained learners adapted to 8x8 digits (upsampled to 28x28)",
                 fontsize=9)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data_dir", nargs="?", default="../shared/data/omniglot")
    parser.add_argument("--out", default="cross_domain_run")
    parser.add_argument("--minutes", type=float, default=20.0, help="training time per learner")
    parser.add_argument("--meta-batch-size", type=int, default=8)
    parser.add_argument("--train-queries", type=int, default=5, help="per class, in training")
    parser.add_argument("--filters", type=int, default=32, help="conv4 filters")
    parser.add_argument("--steps-per-epoch", type=int, default=10)
    parser.add_argument("--episodes", type=int, default=600)
    parser.add_argument("--ways", type=int, nargs="+", default=[5, 10])
    parser.add_argument("--shots", type=int, nargs="+", default=[1, 5, 10])
    parser.add_argument("--steps", type=int, nargs="+", default=[0, 1, 3, 5, 10, 20])
    parser.add_argument("--omniglot-shots", type=int, nargs="*", default=[1, 5])
    parser.add_argument("--results-tag", default="", help="suffix of the results file")
    parser.add_argument("--phase", choices=("train", "eval", "report", "all"), default="all")
    parser.add_argument("--learners", nargs="+", choices=LEARNERS, default=list(LEARNERS))
    parser.add_argument("--plot", default=None, help="where to save the plot (png)")
    parser.add_argument("--quick", action="store_true", help="a few seconds of everything")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.quick:
        args.minutes = min(args.minutes, 0.05)
        args.meta_batch_size = min(args.meta_batch_size, 2)
        args.steps_per_epoch = min(args.steps_per_epoch, 2)
        args.episodes = min(args.episodes, 10)
        args.filters = min(args.filters, 16)
        args.ways, args.shots, args.steps, args.omniglot_shots = [5], [5], [0, 5], [1]
    os.makedirs(args.out, exist_ok=True)

    if args.phase != "report":
        train_xy, test_xy = load_omniglot(args.data_dir, args.seed)
    for name in args.learners:
        if args.phase in ("train", "all"):
            train(name, train_xy, args)
        if args.phase in ("eval", "all"):
            evaluate(name, test_xy, args)
    rows = read_results(args.out)
    if args.phase in ("report", "all"):
        print(markdown_table(rows))
        if args.plot:
            plot(rows, args.plot)
    return rows


if __name__ == "__main__":
    main()
