"""Episodes per second of `km.data.episodes` on Omniglot.

Usage (from the repository root):

    python benchmarks/episodes.py [PATH] [--batch-size 32] [--cold]

PATH is the folder holding images_background.zip (default: ../shared/data/omniglot
relative to the repository root). Each row samples episodes from the 964 background
characters (19,280 images, 28x28), batched by 32 with prefetch, as a training loop
consumes them; `--cold` also times decoding the archives without the cache.
"""

import argparse
import os
import pathlib
import sys
import tempfile
import time

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_PATH = REPO_ROOT.parent / "shared" / "data" / "omniglot"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(REPO_ROOT))  # run from a checkout without installing

import tensorflow as tf  # noqa: E402

import keras_meta as km  # noqa: E402

CONFIGS = [
    # (label, ways, shots, queries, episodes() keyword arguments, rotate as classes)
    ("5-way 1-shot 15-query", 5, 1, 15, {}, False),
    ("20-way 5-shot 15-query", 20, 5, 15, {}, False),
    ("5-way 1-shot, class_rotation", 5, 1, 15, {"augment": "class_rotation"}, False),
    ("5-way 1-shot, rotate_classes (x4)", 5, 1, 15, {}, True),
]


def episodes_per_second(dataset, batch_size, seconds, repeats):
    """Best of `repeats` timed windows: the machine's throughput, not its noise."""
    iterator = iter(dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE))
    for _ in range(20):  # warm-up: tracing, thread pools, autotuning
        next(iterator)
    rates = []
    for _ in range(repeats):
        batches, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            next(iterator)
            batches += 1
        rates.append(batches * batch_size / (time.perf_counter() - start))
    return max(rates)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", default=str(DEFAULT_PATH))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=2.0, help="per timed window")
    parser.add_argument("--repeats", type=int, default=3, help="timed windows (best)")
    parser.add_argument("--cold", action="store_true", help="also time a cold decode")
    args = parser.parse_args()

    if args.cold:
        with tempfile.TemporaryDirectory() as cache:
            start = time.perf_counter()
            km.data.omniglot(args.path, "background", cache_dir=cache)
            cold = time.perf_counter() - start
            start = time.perf_counter()
            km.data.omniglot(args.path, "background", cache_dir=cache)
            warm = time.perf_counter() - start
        print(f"omniglot('background') decode: {cold:.1f} s cold, {warm:.2f} s cached")

    images, labels = km.data.omniglot(args.path, "background")
    rotated = km.data.rotate_classes(images, labels)
    print(
        f"Omniglot background: {len(images)} images, {labels.max() + 1} classes; "
        f"batch {args.batch_size}, prefetch; {os.cpu_count()} CPUs; TF {tf.__version__}"
    )
    print(f"| {'episodes':<34} | {'episodes/s':>10} | {'batches/s':>9} |")
    print(f"|{'-' * 36}|{'-' * 11}:|{'-' * 10}:|")
    for label, ways, shots, queries, kwargs, rotate in CONFIGS:
        x, y = rotated if rotate else (images, labels)
        dataset = km.data.episodes(x, y, ways, shots, queries, seed=0, **kwargs)
        rate = episodes_per_second(dataset, args.batch_size, args.seconds, args.repeats)
        print(f"| {label:<34} | {rate:>10,.0f} | {rate / args.batch_size:>9,.1f} |")


if __name__ == "__main__":
    main()
