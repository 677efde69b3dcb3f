"""Where a meta-training step spends its time: TensorFlow op timings.

Runs a few training steps of a workload of `benchmarks/throughput.py` under the
TensorFlow profiler, reads the trace it writes (`*.xplane.pb`, no TensorBoard
needed) and prints the time per step of each op type, summed over the
executor's threads, with the number of op runs per step. Container ops (the
episode while-loop, function calls) and the executor's own scheduling events
are left out so that each op is counted once.

    python benchmarks/profile_step.py --workload maml-5w1s
    python benchmarks/profile_step.py --workload protonet-60w --steps 5 --top 15

Op time is thread time: on a machine with several cores it can exceed the wall
time of a step. The table's `wall ms/step` line gives the step's wall time
without the profiler.
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# Ops that contain or schedule other ops: counting them would count twice.
_CONTAINERS = {
    "While", "StatelessWhile", "If", "StatelessIf", "PartitionedCall",
    "StatefulPartitionedCall", "_Arg", "_Retval", "Process", "ParallelFor",
    "ExecutorDoneCallback", "Start",
}  # fmt: skip
_GROUPS = {
    "convolutions": ("Conv2D", "_FusedConv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter"),
    "matmuls": ("MatMul", "_FusedMatMul", "BatchMatMulV2", "BatchMatMulV3"),
    "pooling": ("MaxPool", "MaxPoolGrad", "MaxPoolGradGrad", "AvgPool", "AvgPoolGrad"),
}


def base_op(kind: str) -> str:
    """The op a oneDNN kernel stands for (`TF_ENABLE_ONEDNN_OPTS=1` renames
    them): `_MklNativeFusedConv2D` -> `_FusedConv2D`,
    `_MklNativeConv2DBackpropFilterWithBias` -> `Conv2DBackpropFilter`."""
    for prefix in ("_MklNative", "_Mkl"):
        if kind.startswith(prefix):
            kind = kind[len(prefix):]
            # Grappler's fused ops are "_"-prefixed; FusedBatchNorm* are not.
            kind = "_" + kind if kind in ("FusedConv2D", "FusedMatMul") else kind
            break
    return kind.removesuffix("WithBias")


def _group_time(times, kinds) -> float:
    return sum(t for kind, t in times.items() if base_op(kind) in kinds)


def op_times(logdir: str) -> tuple[collections.Counter, collections.Counter]:
    """`(picoseconds, runs)` per op type, from the profiler's host trace."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    path = sorted(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True))[-1]
    space = xplane_pb2.XSpace()
    with open(path, "rb") as f:
        space.ParseFromString(f.read())
    plane = next(p for p in space.planes if p.name == "/host:CPU")
    times, runs = collections.Counter(), collections.Counter()
    for line in plane.lines:
        if not line.name.startswith(("tf_Compute", "tf_numa", "tf_inter_op")):
            continue
        for event in line.events:
            name = plane.event_metadata[event.metadata_id].name
            kind = name.rsplit(":", 1)[-1]
            if kind in _CONTAINERS or kind.startswith("__inference"):
                continue
            times[kind] += event.duration_ps
            runs[kind] += 1
    return times, runs


def main(argv=None) -> None:
    import tensorflow as tf
    from throughput import WORKLOADS, _build

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workload", default="maml-5w1s", choices=sorted(WORKLOADS))
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args(argv)
    cfg = {**WORKLOADS[args.workload], "jit": False}
    learner, x, y = _build(cfg)
    data = tf.data.Dataset.from_tensors((x, y)).repeat()
    learner.fit(data, steps_per_epoch=2, verbose=0)
    start = time.perf_counter()
    learner.fit(data, steps_per_epoch=args.steps, verbose=0)
    wall = (time.perf_counter() - start) / args.steps
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        learner.fit(data, steps_per_epoch=args.steps, verbose=0)
        tf.profiler.experimental.stop()
        times, runs = op_times(logdir)
    total = sum(times.values())
    per_step = 1e-9 / args.steps  # picoseconds -> ms per step
    print(
        f"# {args.workload}: wall {wall * 1e3:.0f} ms/step; op time {total * per_step:.0f} ms/step"
    )
    print(f"# ({sum(runs.values()) // args.steps} op runs per step, {os.cpu_count()} CPUs)\n")
    print("| op | ms/step | share | runs/step | µs/run |")
    print("|---|---|---|---|---|")
    for kind, t in times.most_common(args.top):
        n = runs[kind] / args.steps
        print(
            f"| {kind} | {t * per_step:.1f} | {100 * t / total:.1f} % | {n:.0f} "
            f"| {t * per_step * 1e3 / n:.0f} |"
        )
    print("\n| group | ms/step | share |")
    print("|---|---|---|")
    for group, kinds in _GROUPS.items():
        t = _group_time(times, kinds)
        print(f"| {group} | {t * per_step:.1f} | {100 * t / total:.1f} % |")
    other = total - sum(_group_time(times, kinds) for kinds in _GROUPS.values())
    print(f"| everything else | {other * per_step:.1f} | {100 * other / total:.1f} % |")


if __name__ == "__main__":
    main()
