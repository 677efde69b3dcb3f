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

    python examples/cross_domain.py ../shared/data/omniglot --minutes 12 \\
        --out cross_domain_run --plot docs/img/cross_domain.png

`--quick` trains for a few seconds and evaluates a handful of episodes, to
check that everything runs (the test suite does). `--phase train` / `--phase
eval` run the two halves separately (the learners are saved in `--out`).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import keras
import numpy as np

import keras_meta as km
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


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data_dir", nargs="?", default="../shared/data/omniglot")
    parser.add_argument("--out", default="cross_domain_run")
    parser.add_argument("--minutes", type=float, default=12.0, help="training time per learner")
    parser.add_argument("--meta-batch-size", type=int, default=8)
    parser.add_argument("--train-queries", type=int, default=5, help="per class, in training")
    parser.add_argument("--filters", type=int, default=32, help="conv4 filters")
    parser.add_argument("--steps-per-epoch", type=int, default=10)
    parser.add_argument("--episodes", type=int, default=600)
    parser.add_argument("--phase", choices=("train", "eval", "all"), default="all")
    parser.add_argument("--learners", nargs="+", choices=LEARNERS, default=list(LEARNERS))
    parser.add_argument("--plot", default=None, help="where to save the plot (png)")
    parser.add_argument("--quick", action="store_true", help="a few seconds of everything")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.quick:
        args.minutes = min(args.minutes, 0.1)
        args.meta_batch_size = min(args.meta_batch_size, 2)
        args.steps_per_epoch = min(args.steps_per_epoch, 5)
        args.episodes = min(args.episodes, 8)
    os.makedirs(args.out, exist_ok=True)

    train_xy, test_xy = load_omniglot(args.data_dir, args.seed)
    results = {}
    if args.phase in ("train", "all"):
        for name in args.learners:
            results[name + "_train"] = train(name, train_xy, args)
    if args.phase in ("eval", "all"):
        raise NotImplementedError("evaluation phase: work in progress")
    return results


if __name__ == "__main__":
    main()
