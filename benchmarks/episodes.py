"""Episodes per second and memory of the episode samplers.

Usage (from the repository root):

    python benchmarks/episodes.py [PATH] [--batch-size 32] [--cold]
    python benchmarks/episodes.py [PATH] --memory
    python benchmarks/episodes.py --folder [--classes 64 --per-class 60] [--batch-size 4]

PATH is the folder holding images_background.zip (default: ../shared/data/omniglot
relative to the repository root). Each row samples episodes from the 964 background
characters (19,280 images, 28x28), batched by 32 with prefetch, as a training loop
consumes them; `--cold` also times decoding the archives without the cache.

`--memory`: the Omniglot background set held by a sampler, stored as float32 (before
8-bit storage), as 8-bit levels of the float32 loader output (the default now), and
from `omniglot(dtype="uint8")`: bytes held and the peak resident memory (VmHWM) of a
fresh process for each.

`--folder`: 5-way 5-shot 15-query episodes at 84x84x3 from a generated folder of
JPEGs (random smooth images, 84x84, written to a temporary folder), read into memory
by `image_folder` (float32 or uint8) or streamed from the files by `stream_episodes`;
episodes/s and the peak resident memory (VmHWM) of a fresh process for each.
"""

import argparse
import json
import os
import pathlib
import subprocess
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


def peak_memory_mb():
    """This process's peak resident memory (VmHWM), in MB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def write_jpeg_folder(root, classes, per_class, size=84, seed=0):
    """`classes` x `per_class` smooth random RGB JPEGs, like downsized photos."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c in range(classes):
        folder = os.path.join(root, f"n{c:08d}")
        os.makedirs(folder)
        for i in range(per_class):
            coarse = rng.integers(0, 256, (size // 6, size // 6, 3), dtype=np.uint8)
            image = Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC)
            image.save(os.path.join(folder, f"{i:04d}.jpg"), quality=90)


FOLDER_MODES = {
    "in memory, float32 (image_folder)": "float32",
    "in memory, uint8 (image_folder dtype='uint8')": "uint8",
    "streamed (stream_episodes)": "stream",
}
MEMORY_MODES = {
    "float32 storage (before)": "float32-storage",
    "float32 loader, 8-bit storage (default)": "float32",
    "omniglot(dtype='uint8'), scale=255": "uint8",
}


def folder_worker(mode, path, args):
    """One row of the folder table, in a fresh process: prints a JSON result."""
    start = time.perf_counter()
    if mode == "stream":
        dataset = km.data.stream_episodes(path, 5, 5, 15, image_size=84, seed=0)
        held = 0
    else:
        x, y, _ = km.data.image_folder(path, 84, dtype=mode)
        dataset = km.data.episodes(x, y, 5, 5, 15, seed=0, scale=255 if mode == "uint8" else None)
        held = x.nbytes
    setup = time.perf_counter() - start
    rate = episodes_per_second(dataset, args.batch_size, args.seconds, args.repeats)
    return {"rate": rate, "setup": setup, "held_mb": held / 1e6, "peak_mb": peak_memory_mb()}


def memory_worker(mode, path):
    """One row of the Omniglot memory table, in a fresh process."""
    if mode == "float32-storage":
        from keras_meta.data import _pixels

        # As before 8-bit storage: the sampler keeps the float32 examples.
        _pixels.compact = lambda x, scale: (x, lambda rows: tf.cast(rows, tf.float32))
    x, y = km.data.omniglot(path, "background", dtype="uint8" if mode == "uint8" else "float32")
    sampler = km.data.EpisodeSampler(x, y, 5, 1, 15, seed=0, scale=255 if mode == "uint8" else None)
    next(iter(sampler.dataset().batch(32)))
    stored = sampler._examples.shape.num_elements() * sampler._examples.dtype.size
    return {"loader_mb": x.nbytes / 1e6, "sampler_mb": stored / 1e6, "peak_mb": peak_memory_mb()}


def run_worker(*worker_args):
    """Runs this script as a fresh process (so that VmHWM is its own) and reads its JSON."""
    command = [sys.executable, __file__, *worker_args]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(worker_args)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def folder_table(args):
    with tempfile.TemporaryDirectory() as root:
        start = time.perf_counter()
        write_jpeg_folder(root, args.classes, args.per_class)
        print(
            f"{args.classes} classes x {args.per_class} JPEGs (84x84x3) written in "
            f"{time.perf_counter() - start:.1f} s; 5-way 5-shot 15-query, batch "
            f"{args.batch_size}, prefetch; {os.cpu_count()} CPUs; TF {tf.__version__}"
        )
        base = run_worker("--worker", "baseline", root)
        print(f"A fresh process that imports keras_meta peaks at {base['peak_mb']:,.0f} MB.")
        print(
            f"| {'sampler':<46} | {'episodes/s':>10} | {'set-up s':>8} | "
            f"{'images held MB':>14} | {'peak MB':>8} |"
        )
        print(f"|{'-' * 48}|{'-' * 11}:|{'-' * 9}:|{'-' * 15}:|{'-' * 9}:|")
        for label, mode in FOLDER_MODES.items():
            extra = ["--batch-size", str(args.batch_size), "--seconds", str(args.seconds)]
            r = run_worker("--worker", mode, root, *extra, "--repeats", str(args.repeats))
            print(
                f"| {label:<46} | {r['rate']:>10,.1f} | {r['setup']:>8.1f} | "
                f"{r['held_mb']:>14,.1f} | {r['peak_mb']:>8,.0f} |"
            )


def memory_table(args):
    base = run_worker("--worker", "baseline", args.path)
    print(
        "Omniglot background (19,280 images, 28x28), one EpisodeSampler, one batch of 32 "
        f"episodes drawn; a fresh process that imports keras_meta peaks at "
        f"{base['peak_mb']:,.0f} MB."
    )
    print(f"| {'images':<42} | {'loader array MB':>15} | {'sampler MB':>10} | {'peak MB':>8} |")
    print(f"|{'-' * 44}|{'-' * 16}:|{'-' * 11}:|{'-' * 9}:|")
    for label, mode in MEMORY_MODES.items():
        r = run_worker("--worker", "memory-" + mode, args.path)
        print(
            f"| {label:<42} | {r['loader_mb']:>15.1f} | {r['sampler_mb']:>10.1f} | "
            f"{r['peak_mb']:>8,.0f} |"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", default=str(DEFAULT_PATH))
    parser.add_argument("--batch-size", type=int, default=None, help="32; 4 with --folder")
    parser.add_argument("--seconds", type=float, default=2.0, help="per timed window")
    parser.add_argument("--repeats", type=int, default=3, help="timed windows (best)")
    parser.add_argument("--cold", action="store_true", help="also time a cold decode")
    parser.add_argument("--memory", action="store_true", help="Omniglot memory table")
    parser.add_argument("--folder", action="store_true", help="JPEG folder table")
    parser.add_argument("--classes", type=int, default=64)
    parser.add_argument("--per-class", type=int, default=60)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.batch_size is None:
        args.batch_size = 4 if args.folder or args.worker in FOLDER_MODES.values() else 32

    if args.worker is not None:
        if args.worker == "baseline":
            result = {"peak_mb": peak_memory_mb()}
        elif args.worker.startswith("memory-"):
            result = memory_worker(args.worker[len("memory-") :], args.path)
        else:
            result = folder_worker(args.worker, args.path, args)
        print(json.dumps(result))
        return
    if args.folder:
        folder_table(args)
        return
    if args.memory:
        memory_table(args)
        return

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
