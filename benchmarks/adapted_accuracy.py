"""Accuracy of the model that `learner.adapt` returns, against the learner's evaluation.

Usage (from the repository root):

    python benchmarks/adapted_accuracy.py [PATH] [--iterations 300] [--episodes 100]

PATH is the folder holding the Omniglot zips (default: ../shared/data/omniglot
relative to the repository root). For each learner (second-order MAML on a
conv4 with stride-2 convolutions, ProtoNet on a max-pooling conv4) and each
`bn_mode`, a small learner is meta-trained on the background alphabets
(5-way 1-shot), then evaluated on the same 5-way 1-shot 15-query episodes of
the evaluation alphabets: `km.evaluate` (the learner's own predictions), the
default adapted model (`learner.adapt(support_x, support_y).predict(query_x)`)
and, for `bn_mode="transductive"`, the adapted models with the support set's
statistics (`batch_norm="support"`) and with the moving statistics
(`batch_norm="running"`, what `adapt` returned before). It prints a Markdown
table of mean query accuracy ± 95% CI.
"""

import argparse
import os
import pathlib
import sys
import time

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_PATH = REPO_ROOT.parent / "shared" / "data" / "omniglot"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(REPO_ROOT))  # run from a checkout without installing

import keras  # noqa: E402

import keras_meta as km  # noqa: E402
from keras_meta import presets  # noqa: E402


def build(algorithm, bn_mode, filters):
    if algorithm == "maml":
        net = presets.conv4((28, 28, 1), 5, filters=filters, pooling="strided", bn_scale=False)
        learner = km.MAML(net, inner_learning_rate=0.4, inner_steps=1, eval_inner_steps=3,
                          bn_mode=bn_mode)
    else:
        net = presets.conv4((28, 28, 1), None, filters=filters, pooling="max")
        learner = km.ProtoNet(net, bn_mode=bn_mode)
    learner.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return learner


def cell(results, key):
    return f"{100 * results[key]:.1f} ± {100 * results[key + '_ci95']:.1f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", default=str(DEFAULT_PATH))
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--meta-batch-size", type=int, default=8)
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--filters", type=int, default=32)
    parser.add_argument("--learners", default="maml,protonet")
    args = parser.parse_args()

    keras.utils.set_random_seed(0)
    train_x, train_y = km.data.omniglot(args.path, split="background")
    test_x, test_y = km.data.omniglot(args.path, split="evaluation")
    train = km.data.episodes(train_x, train_y, ways=5, shots=1, queries=15, seed=0)
    rows = []
    for algorithm in args.learners.split(","):
        for bn_mode in ("transductive", "running"):
            start = time.perf_counter()
            learner = build(algorithm, bn_mode, args.filters)
            learner.fit(
                train.batch(args.meta_batch_size, drop_remainder=True),
                steps_per_epoch=args.iterations,
                epochs=1,
                verbose=0,
            )
            trained = time.perf_counter() - start
            test = km.data.episodes(
                test_x, test_y, ways=5, shots=1, queries=15, seed=1,
                num_episodes=args.episodes,
            )
            def scored(batch_norm=None, learner=learner, test=test):
                return km.evaluate(learner, test, num_episodes=args.episodes,
                                   with_adapted_model=True, adapted_batch_norm=batch_norm)

            default = scored()
            cells = [cell(default, "accuracy"),
                     f"{cell(default, 'adapted_accuracy')} ({default['adapted_batch_norm']})"]
            if bn_mode == "transductive":
                for batch_norm in ("support", "running"):
                    other = scored(batch_norm)
                    assert abs(default["accuracy"] - other["accuracy"]) < 1e-9  # same episodes
                    cells.append(cell(other, "adapted_accuracy"))
            else:
                cells += ["= default", "= default"]
            rows.append(f"| {algorithm} | {bn_mode} | {' | '.join(cells)} | {trained:.0f} s |")
            print(rows[-1], flush=True)
    print()
    print(f"5-way 1-shot Omniglot, {args.iterations} iterations of {args.meta_batch_size} "
          f"episodes, conv4 with {args.filters} filters; {args.episodes} test episodes "
          "(evaluation alphabets, 15 queries per class), query accuracy % ± 95% CI.")
    print()
    print("| learner | bn_mode | learner evaluation (`km.evaluate`) | default adapted model "
          "| adapted, `batch_norm=\"support\"` | adapted, `batch_norm=\"running\"` "
          "| training time |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
