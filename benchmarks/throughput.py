"""Meta-training throughput (tasks/s) and peak memory of MAML.

Prints one table row per configuration: the conv4 network of the MAML paper
(4 x [64 filters 3x3, BatchNorm, ReLU, 2x2 max-pool]) on 28x28x1 inputs,
5-way 1-shot 15-query, meta-batch 8 and 32, 1 and 5 inner steps, first and
second order; and the sinusoid MLP (1-40-40-1, K=10, meta-batch 25).

Each configuration runs in a fresh subprocess so that its peak memory (peak
RSS on CPU; TensorFlow's peak allocator bytes on GPU) is its own. Data comes
from one constant batch, so the numbers measure the training step only (the
episode sampler has its own benchmark, `benchmarks/episodes.py`).

    python benchmarks/throughput.py                # full table
    python benchmarks/throughput.py --quick        # fewer configurations
    python benchmarks/throughput.py --jit          # XLA (compile(jit_compile=True))
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def conv4(ways: int):
    import keras

    layers = [keras.Input((28, 28, 1))]
    for _ in range(4):
        layers += [
            keras.layers.Conv2D(64, 3, padding="same"),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.MaxPooling2D(2),
        ]
    layers += [keras.layers.Flatten(), keras.layers.Dense(ways)]
    return keras.Sequential(layers)


def run_one(cfg: dict) -> dict:
    import keras
    import numpy as np
    import tensorflow as tf

    import keras_meta as km
    from keras_meta.demo import sinusoid_mlp

    rng = np.random.default_rng(0)
    b = cfg["meta_batch"]
    if cfg["model"] == "conv4":
        ways, shots, queries = 5, 1, 15
        model = conv4(ways)
        x = {
            "support_x": rng.random((b, ways * shots, 28, 28, 1), "float32"),
            "support_y": np.tile(np.arange(ways).repeat(shots), (b, 1)).astype("int32"),
            "query_x": rng.random((b, ways * queries, 28, 28, 1), "float32"),
        }
        y = np.tile(np.arange(ways).repeat(queries), (b, 1)).astype("int32")
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        lr = 0.4
    else:
        model = sinusoid_mlp()
        x = {
            "support_x": rng.uniform(-5, 5, (b, 10, 1)).astype("float32"),
            "support_y": rng.normal(size=(b, 10, 1)).astype("float32"),
            "query_x": rng.uniform(-5, 5, (b, 10, 1)).astype("float32"),
        }
        y = rng.normal(size=(b, 10, 1)).astype("float32")
        loss = "mse"
        lr = 0.01
    learner = km.MAML(
        model,
        inner_learning_rate=lr,
        inner_steps=cfg["inner_steps"],
        first_order=cfg["first_order"],
    )
    learner.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss, jit_compile=cfg["jit"])
    data = tf.data.Dataset.from_tensors((x, y)).repeat().prefetch(2)
    gpus = tf.config.list_physical_devices("GPU")
    warmup = 3
    learner.fit(data, steps_per_epoch=warmup, epochs=1, verbose=0)
    if gpus:
        tf.config.experimental.reset_memory_stats("GPU:0")
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    steps = cfg["steps"]
    start = time.perf_counter()
    learner.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
    seconds = time.perf_counter() - start
    if gpus:
        peak_mb = tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        **cfg,
        "tasks_per_s": steps * b / seconds,
        "step_ms": 1000 * seconds / steps,
        "peak_mb": peak_mb,
        "rss_growth_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024,
        "device": "GPU" if gpus else "CPU",
    }


def configurations(quick: bool, jit: bool, steps: int) -> list[dict]:
    cfgs = []
    for meta_batch in (8,) if quick else (8, 32):
        for inner_steps in (1, 5):
            for first_order in (True, False):
                cfgs.append(
                    dict(
                        model="conv4",
                        meta_batch=meta_batch,
                        inner_steps=inner_steps,
                        first_order=first_order,
                        jit=jit,
                        steps=steps,
                    )
                )
    cfgs.append(
        dict(
            model="sinusoid_mlp",
            meta_batch=25,
            inner_steps=1,
            first_order=False,
            jit=jit,
            steps=steps * 10,
        )
    )
    return cfgs


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--jit", action="store_true", help="compile with XLA")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per config")
    parser.add_argument("--single", help=argparse.SUPPRESS)
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    if args.single:
        print(json.dumps(run_one(json.loads(args.single))))
        return

    here = os.path.dirname(os.path.abspath(__file__))
    env = {**os.environ, "PYTHONPATH": os.path.dirname(here)}
    rows = []
    print(
        f"# MAML meta-training throughput — {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, python {platform.python_version()}"
    )
    header = "| model | meta-batch | inner steps | order | XLA | tasks/s | ms/step | peak MB |"
    print(header)
    print("|" + "---|" * 8)
    for cfg in configurations(args.quick, args.jit, args.steps):
        out = subprocess.run(
            [sys.executable, __file__, "--single", json.dumps(cfg)],
            capture_output=True,
            text=True,
            env=env,
        )
        if out.returncode != 0:
            print(f"| {cfg} | failed: {out.stderr.strip().splitlines()[-1]} |")
            continue
        row = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(row)
        order = "1st" if row["first_order"] else "2nd"
        print(
            f"| {row['model']} | {row['meta_batch']} | {row['inner_steps']} | {order} | "
            f"{'on' if row['jit'] else 'off'} | {row['tasks_per_s']:.1f} | "
            f"{row['step_ms']:.0f} | {row['peak_mb']:.0f} |",
            flush=True,
        )
    if rows:
        print(f"\n(device: {rows[0]['device']}; peak MB is peak process RSS on CPU)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
