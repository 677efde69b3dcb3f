"""MAML on Omniglot 5-way 1-shot, from the official archives.

Protocol (Finn et al., 2017, section 5.2, with the split of their code): the
1,623 characters of both official archives are split by class, 1,100 for
meta-training, 100 for validation and 423 for testing (seeded); images are
28x28, ink = 1; each character of a training episode is rotated by a random
multiple of 90 degrees; MAML's conv4 (`keras_meta.models.conv4` with
`pooling="strided"`: four blocks of a stride-2 3x3 convolution with 64
filters, BatchNorm without a learned scale and ReLU, then the mean of the last
feature map; no max-pooling); inner SGD lr 0.4, 1 inner step in training and 3
at test time; meta-batch 32; Adam 1e-3; BatchNorm in transductive mode. Unlike
MAML's code (1 query per class), episodes have 15 queries per class. The paper
trains 60,000 iterations; the default here is a short run on a CPU. The full
protocol is `keras-meta train --protocol maml-omniglot-5w1s`.

    python examples/omniglot_maml.py PATH/TO/omniglot --iterations 2000

prints the 600-episode test accuracy with its 95% confidence interval.
"""

from __future__ import annotations

import argparse
import time

import keras
import numpy as np

import keras_meta as km
from keras_meta.experiments.protocols import MAML_SPLIT_SIZES


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "data_dir",
        help="folder with images_background.zip and "
        "images_evaluation.zip (or their extracted folders)",
    )
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--ways", type=int, default=5)
    parser.add_argument("--shots", type=int, default=1)
    parser.add_argument("--meta-batch-size", type=int, default=32)
    parser.add_argument("--first-order", action="store_true")
    parser.add_argument("--episodes", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    keras.utils.set_random_seed(args.seed)
    background = km.data.omniglot(args.data_dir, split="background")
    evaluation = km.data.omniglot(args.data_dir, split="evaluation")
    images = np.concatenate([background[0], evaluation[0]])
    labels = np.concatenate([background[1], evaluation[1] + background[1].max() + 1])
    split = km.data.split_classes(labels, MAML_SPLIT_SIZES, seed=args.seed)
    train_x, train_y = split.select("train", images, labels)
    test_x, test_y = split.select("test", images, labels)

    train = km.data.episodes(
        train_x,
        train_y,
        ways=args.ways,
        shots=args.shots,
        queries=15,
        seed=args.seed,
        augment="class_rotation",
    )
    test = km.data.episodes(
        test_x,
        test_y,
        ways=args.ways,
        shots=args.shots,
        queries=15,
        seed=10_000 + args.seed,
        num_episodes=args.episodes,
    )
    learner = km.MAML(
        km.models.conv4((28, 28, 1), args.ways, pooling="strided", bn_scale=False),
        inner_learning_rate=0.4,
        inner_steps=1,
        eval_inner_steps=3,
        first_order=args.first_order,
    )
    learner.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    epochs = max(1, min(20, args.iterations // 100))
    start = time.time()
    learner.fit(
        train.batch(args.meta_batch_size).prefetch(2),
        epochs=epochs,
        steps_per_epoch=-(-args.iterations // epochs),
        shuffle=False,
    )
    seconds = time.time() - start
    results = km.evaluate(learner, test, num_episodes=args.episodes)
    print(
        f"Omniglot {args.ways}-way {args.shots}-shot, "
        f"{'first-order ' if args.first_order else ''}MAML, "
        f"{epochs * -(-args.iterations // epochs)} iterations in {seconds:.0f} s: "
        f"test accuracy {100 * results['accuracy']:.2f} ± "
        f"{100 * results['accuracy_ci95']:.2f}% over {args.episodes} episodes "
        f"(BN mode: {results['bn_mode']}, {results['inner_steps']} inner steps)"
    )
    return results


if __name__ == "__main__":
    main()
