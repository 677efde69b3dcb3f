"""Per-episode convolutions: the episode loop against one batched call.

The question behind the batched-episode path of docs/performance.md: a
meta-batch of B episodes, each with its own copy of a convolution's filter
(after the inner step every episode has its own weights), costs either B small
convolutions (what keras_meta's episode loop runs, `tf.while_loop` with
`parallel_iterations=4`) or one batched product of image patches
(`tf.image.extract_patches`, then `tf.matmul` over the episode axis), the
formulation an accelerator wants. For each convolution of the strided conv4
of `maml-omniglot-5w1s` this times the MAML math of that convolution alone
(support loss, inner gradient, one inner step, query loss, second-order
meta-gradient) both ways, and checks that they give the same meta-gradient.

    python benchmarks/episode_batching.py                 # oneDNN off and on, one thread
    python benchmarks/episode_batching.py --threads 0     # TensorFlow's thread count

Each (oneDNN, form) pair runs in a fresh process: TensorFlow reads
`TF_ENABLE_ONEDNN_OPTS` once, at import. CPU time is the process's, best of
`--repeats`; on a shared machine compare CPU times, not wall times.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

# (input height = width, input channels) of the four 3x3 stride-2 convolutions
# of the strided conv4 on 28x28 images, 64 filters each.
LAYERS = ((28, 1), (14, 64), (7, 64), (4, 64))
FORMS = ("loop", "batched")


def _measure(form: str, size: int, channels: int, episodes: int, shots: int,
             repeats: int, steps: int) -> dict:  # fmt: skip
    import numpy as np
    import tensorflow as tf

    def conv(x, w):
        return tf.nn.conv2d(x, w, 2, "SAME")

    def loop_step(w0, xs, xq):
        # One episode per iteration, its meta-gradient accumulated: the episode loop.
        def body(b, grads, loss):
            with tf.GradientTape() as outer:
                outer.watch(w0)
                with tf.GradientTape() as inner:
                    inner.watch(w0)
                    support_loss = tf.reduce_sum(tf.square(conv(xs[b], w0)))
                w1 = w0 - 0.01 * inner.gradient(support_loss, w0)
                query_loss = tf.reduce_sum(tf.square(conv(xq[b], w1)))
            return b + 1, grads + outer.gradient(query_loss, w0), loss + query_loss

        start = (tf.constant(0), tf.zeros_like(w0), tf.constant(0.0, w0.dtype))
        _, grads, loss = tf.while_loop(
            lambda b, *_: b < episodes, body, start, parallel_iterations=4
        )
        return loss, grads

    def batched_conv(x, w):
        # x [B, N, H, W, C], w [B, 3, 3, C, O]: im2col, then one batched matmul.
        b, n, h, wd, c = x.shape
        patches = tf.image.extract_patches(
            tf.reshape(x, [b * n, h, wd, c]), [1, 3, 3, 1], [1, 2, 2, 1], [1, 1, 1, 1], "SAME"
        )
        oh, ow = patches.shape[1], patches.shape[2]
        patches = tf.reshape(patches, [b, n * oh * ow, 9 * c])
        out = tf.matmul(patches, tf.reshape(w, [b, 9 * c, -1]))
        return tf.reshape(out, [b, n, oh, ow, -1])

    def batched_step(w0, xs, xq):
        with tf.GradientTape() as outer:
            outer.watch(w0)
            per_episode = tf.tile(w0[None], [episodes, 1, 1, 1, 1])
            with tf.GradientTape() as inner:
                inner.watch(per_episode)
                # Episodes are independent: the gradient of the sum is each one's.
                support_loss = tf.reduce_sum(tf.square(batched_conv(xs, per_episode)))
            w1 = per_episode - 0.01 * inner.gradient(support_loss, per_episode)
            query_loss = tf.reduce_sum(tf.square(batched_conv(xq, w1)))
        return query_loss, outer.gradient(query_loss, w0)

    rng = np.random.default_rng(0)
    xs, xq = (
        tf.constant(rng.normal(size=(episodes, shots, size, size, channels)), tf.float32)
        for _ in range(2)
    )
    w0 = tf.constant(rng.normal(scale=0.1, size=(3, 3, channels, 64)), tf.float32)
    step = tf.function(loop_step if form == "loop" else batched_step)
    grads = step(w0, xs, xq)[1].numpy()
    # The reference is the loop in float64.
    reference = tf.function(loop_step)(
        tf.cast(w0, tf.float64), tf.cast(xs, tf.float64), tf.cast(xq, tf.float64)
    )[1].numpy()
    error = float(np.max(np.abs(grads - reference)) / np.max(np.abs(reference)))
    wall = cpu = float("inf")
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        for _ in range(steps):
            step(w0, xs, xq)[1].numpy()
        wall = min(wall, (time.perf_counter() - t) / steps)
        cpu = min(cpu, (time.process_time() - c) / steps)
    return {"wall_ms": wall * 1e3, "cpu_ms": cpu * 1e3, "error": error}


def _worker(args) -> None:
    import tensorflow as tf

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    rows = [
        _measure(args.form, size, channels, args.episodes, args.shots, args.repeats, args.steps)
        for size, channels in LAYERS
    ]
    print(json.dumps(rows))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=32, help="meta-batch (default 32)")
    parser.add_argument("--shots", type=int, default=5, help="images per episode (default 5)")
    parser.add_argument("--threads", type=int, default=1,
                        help="intra-op threads (default 1; 0: TensorFlow's choice)")
    parser.add_argument("--onednn", choices=("off", "on", "both"), default="both")
    parser.add_argument("--repeats", type=int, default=5, help="best of (default 5)")
    parser.add_argument("--steps", type=int, default=3, help="steps per repeat (default 3)")
    parser.add_argument("--form", choices=FORMS, help=argparse.SUPPRESS)  # the worker's
    args = parser.parse_args(argv)
    if args.form:
        _worker(args)
        return 0

    settings = ("off", "on") if args.onednn == "both" else (args.onednn,)
    results = {}
    for onednn in settings:
        for form in FORMS:
            env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="1" if onednn == "on" else "0",
                       TF_CPP_MIN_LOG_LEVEL="3")  # fmt: skip
            command = [sys.executable, os.path.abspath(__file__), "--form", form,
                       *(f"--{k}={getattr(args, k)}" for k in
                         ("episodes", "shots", "threads", "repeats", "steps"))]  # fmt: skip
            out = subprocess.run(command, env=env, capture_output=True, text=True)
            if out.returncode:
                sys.exit(f"the {form} worker (oneDNN {onednn}) failed:\n{out.stderr[-3000:]}")
            results[onednn, form] = json.loads(out.stdout.strip().splitlines()[-1])

    threads = args.threads or "default"
    print(f"{args.episodes} episodes of {args.shots} images, 3x3 stride-2 convolutions with "
          f"64 filters, second-order MAML math; intra-op threads: {threads}")  # fmt: skip
    print("| convolution | oneDNN | loop CPU ms | batched CPU ms | batched / loop | "
          "loop wall ms | batched wall ms | max rel. error loop / batched |")
    print("|---|---|---|---|---|---|---|---|")
    for onednn in settings:
        loop, batched = results[onednn, "loop"], results[onednn, "batched"]
        for i, (size, channels) in enumerate(LAYERS):
            a, b = loop[i], batched[i]
            print(f"| {size}x{size}x{channels} | {onednn} | {a['cpu_ms']:.1f} | {b['cpu_ms']:.1f} "
                  f"| {b['cpu_ms'] / a['cpu_ms']:.2f} | {a['wall_ms']:.1f} | {b['wall_ms']:.1f} "
                  f"| {a['error']:.1e} / {b['error']:.1e} |")  # fmt: skip
        total_a = sum(r["cpu_ms"] for r in loop)
        total_b = sum(r["cpu_ms"] for r in batched)
        print(f"| all four | {onednn} | {total_a:.1f} | {total_b:.1f} "
              f"| {total_b / total_a:.2f} | | | |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
