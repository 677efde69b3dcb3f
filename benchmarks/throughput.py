"""Meta-training throughput: this tree against a baseline commit, in one run.

For each workload (the training step of a protocol, on one constant batch so
that only the step is measured; the sampler has `benchmarks/episodes.py`), the
script times this working tree and a baseline commit checked out in a
`git worktree`, alternating the two, each run in a fresh subprocess (its own
peak memory), best of `--repeats`. It prints, per workload: ms per step and
tasks/s of both, the speed-up, the floating-point work of one step (counted
from the traced graph: convolutions and matrix products, forward and
backward, inner and outer loop), the GFLOP/s that achieves and that as a
fraction of the machine's float32 matmul rate (a 2048x2048 `tf.matmul`,
measured by the same script), peak memory, and where PyTorch is installed,
the same MAML step written with `torch.func` (`benchmarks/peers/`).

    python benchmarks/throughput.py                      # every workload
    python benchmarks/throughput.py --workloads maml-5w1s,protonet-60w
    python benchmarks/throughput.py --baseline HEAD~3 --repeats 5
    python benchmarks/throughput.py --jit                # XLA (jit_compile=True)
    python benchmarks/throughput.py --baseline HEAD --this-env TF_ENABLE_ONEDNN_OPTS=0

The machines this project runs on are shared: compare the ratios of one run,
not absolute numbers across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# The last commit before the throughput work (issue 8); any ref works.
DEFAULT_BASELINE = "ff6e6e2"

# Omniglot protocols (see `keras-meta protocols`): MAML's strided
# conv4 without BatchNorm scale; ProtoNets' max-pooling conv4 embedding.
WORKLOADS = {
    "maml-5w1s": dict(
        algorithm="maml", model="conv4-strided", ways=5, shots=1, queries=1,
        meta_batch=32, inner_steps=1, inner_lr=0.4, first_order=False,
    ),
    "fomaml-5w1s": dict(
        algorithm="maml", model="conv4-strided", ways=5, shots=1, queries=1,
        meta_batch=32, inner_steps=1, inner_lr=0.4, first_order=True,
    ),
    "maml-20w1s": dict(
        algorithm="maml", model="conv4-strided", ways=20, shots=1, queries=1,
        meta_batch=16, inner_steps=5, inner_lr=0.1, first_order=False,
    ),
    "protonet-60w": dict(
        algorithm="protonet", model="conv4-max", ways=60, shots=1, queries=5,
        meta_batch=1,
    ),
    "maml-sinusoid": dict(
        algorithm="maml", model="mlp", ways=None, shots=10, queries=10,
        meta_batch=25, inner_steps=1, inner_lr=0.01, first_order=False,
    ),
}  # fmt: skip


# ----------------------------------------------------------------------------
# Worker: one workload, with whichever keras_meta PYTHONPATH points at.
# ----------------------------------------------------------------------------
def _build(cfg):
    import keras
    import numpy as np

    import keras_meta as km

    try:  # the baseline tree may predate keras_meta.models; both trees must run this.
        from keras_meta.models import conv4, mlp
    except ImportError:
        from keras_meta.presets import conv4, mlp

    rng = np.random.default_rng(0)
    b, ways, shots, queries = cfg["meta_batch"], cfg["ways"], cfg["shots"], cfg["queries"]
    if cfg["model"] == "mlp":
        model = mlp(1, 1, (40, 40))
        x = {
            "support_x": rng.uniform(-5, 5, (b, shots, 1)).astype("float32"),
            "support_y": rng.normal(size=(b, shots, 1)).astype("float32"),
            "query_x": rng.uniform(-5, 5, (b, queries, 1)).astype("float32"),
        }
        y = rng.normal(size=(b, queries, 1)).astype("float32")
        loss = "mse"
    else:
        pooling = "strided" if cfg["model"] == "conv4-strided" else "max"
        head = ways if cfg["algorithm"] != "protonet" else None
        model = conv4((28, 28, 1), num_outputs=head, pooling=pooling, bn_scale=pooling == "max")
        x = {
            "support_x": rng.random((b, ways * shots, 28, 28, 1), "float32"),
            "support_y": np.tile(np.arange(ways).repeat(shots), (b, 1)).astype("int32"),
            "query_x": rng.random((b, ways * queries, 28, 28, 1), "float32"),
        }
        y = np.tile(np.arange(ways).repeat(queries), (b, 1)).astype("int32")
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    if cfg["algorithm"] == "protonet":
        learner = km.ProtoNet(model, ways=ways)
    else:
        learner = km.MAML(
            model,
            inner_learning_rate=cfg["inner_lr"],
            inner_steps=cfg["inner_steps"],
            first_order=cfg["first_order"],
        )
    learner.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss, jit_compile=cfg["jit"])
    return learner, x, y


# Floating-point operations of the ops that dominate a training step.
def _op_flops(op) -> int:
    import numpy as np

    def shape(t):
        s = t.shape
        return None if s.rank is None or None in s.as_list() else s.as_list()

    t = op.type
    if t in ("Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter"):
        if t == "Conv2D":
            filt, out = shape(op.inputs[1]), shape(op.outputs[0])
        elif t == "Conv2DBackpropInput":
            filt, out = shape(op.inputs[1]), shape(op.inputs[2])
        else:
            filt, out = shape(op.outputs[0]), shape(op.inputs[2])
        if filt is None or out is None:
            return 0
        return 2 * int(np.prod(out)) * filt[0] * filt[1] * filt[2]
    if t in ("MatMul", "BatchMatMulV2", "BatchMatMulV3"):
        a, out = shape(op.inputs[0]), shape(op.outputs[0])
        if a is None or out is None:
            return 0
        transpose = op.get_attr("transpose_a" if t == "MatMul" else "adj_x")
        k = a[-2] if transpose else a[-1]
        return 2 * int(np.prod(out)) * k
    return 0


def _graph_flops(graph, episodes: int) -> int:
    """FLOPs of one call of `graph`; a While body runs once per episode."""
    total = 0
    for op in graph.get_operations():
        if op.type in ("While", "StatelessWhile"):
            body = graph._get_function(op.get_attr("body").name)
            total += episodes * _graph_flops(body.graph, episodes)
        elif op.type in ("If", "StatelessIf"):
            branches = ("then_branch", "else_branch")
            total += max(
                _graph_flops(graph._get_function(op.get_attr(k).name).graph, episodes)
                for k in branches
            )
        elif op.type in ("PartitionedCall", "StatefulPartitionedCall"):
            total += _graph_flops(graph._get_function(op.get_attr("f").name).graph, episodes)
        else:
            total += _op_flops(op)
    return total


def _import_from(tree: str) -> str:
    """Makes `import keras_meta` load the package of `tree`.

    An editable install (`pip install -e`) puts a finder on `sys.meta_path`
    that wins over PYTHONPATH; drop it so that the baseline worktree's package,
    not the installed one, is timed.
    """
    sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in repr(f)]
    sys.path.insert(0, tree)
    import keras_meta

    location = os.path.abspath(keras_meta.__file__)
    if not location.startswith(os.path.abspath(tree) + os.sep):
        raise RuntimeError(f"keras_meta was imported from {location}, not from {tree}.")
    return location


def run_one(cfg: dict) -> dict:
    import tensorflow as tf

    package = _import_from(cfg["tree"])
    learner, x, y = _build(cfg)
    data = tf.data.Dataset.from_tensors((x, y)).repeat().prefetch(2)
    gpus = tf.config.list_physical_devices("GPU")
    learner.fit(data, steps_per_epoch=2, epochs=1, verbose=0)
    flops = _graph_flops(
        tf.function(learner.train_step)
        .get_concrete_function(tf.nest.map_structure(tf.constant, (x, y)))
        .graph,
        cfg["meta_batch"],
    )
    if gpus:
        tf.config.experimental.reset_memory_stats("GPU:0")
    steps = cfg["steps"]
    start, cpu = time.perf_counter(), time.process_time()
    learner.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
    seconds = time.perf_counter() - start
    cpu = time.process_time() - cpu
    if gpus:
        peak_mb = tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
    else:
        peak_mb = _peak_rss_mb()
    return {
        **cfg,
        "step_ms": 1000 * seconds / steps,
        "cpu_ms": 1000 * cpu / steps,
        "tasks_per_s": steps * cfg["meta_batch"] / seconds,
        "gflop": flops / 1e9,
        "peak_mb": peak_mb,
        "device": "GPU" if gpus else "CPU",
        "package": package,
    }


def _peak_rss_mb() -> float:
    """This process's peak resident memory.

    `ru_maxrss` starts a child at its parent's peak (it survives fork and
    exec on Linux), so read the process's own high-water mark where there is
    one.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def matmul_gflops(size: int = 2048, repeats: int = 20) -> float:
    """The float32 `tf.matmul` rate of this machine (best of a few runs)."""
    import tensorflow as tf

    a = tf.random.normal([size, size])
    mm = tf.function(lambda a: tf.matmul(a, a))
    mm(a).numpy()
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeats):
            r = mm(a)
        r.numpy()
        best = min(best, (time.perf_counter() - start) / repeats)
    return 2 * size**3 / best / 1e9


# ----------------------------------------------------------------------------
# Driver.
# ----------------------------------------------------------------------------
def _run(tree: str, cfg: dict, extra_env: dict | None = None) -> dict:
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", **(extra_env or {})}
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--single", json.dumps({**cfg, "tree": tree})],
        capture_output=True,
        text=True,
        env=env,
        cwd=tree,
    )
    if out.returncode != 0:
        tail = (out.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"{cfg['name']} failed in {tree}: {tail}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _peer(cfg: dict, steps: int) -> dict | None:
    if cfg["algorithm"] != "maml" or cfg["model"] != "conv4-strided":
        return None
    try:
        import torch  # noqa: F401
    except ImportError:
        return None
    best = None
    for mode in ("vmap", "loop"):
        cmd = [
            sys.executable, os.path.join(HERE, "peers", "torch_maml.py"),
            "--ways", str(cfg["ways"]), "--shots", str(cfg["shots"]),
            "--queries", str(cfg["queries"]), "--meta-batch", str(cfg["meta_batch"]),
            "--inner-steps", str(cfg["inner_steps"]), "--inner-lr", str(cfg["inner_lr"]),
            "--mode", mode, "--steps", str(steps), "--warmup", "2", "--json",
        ] + (["--first-order"] if cfg["first_order"] else [])  # fmt: skip
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode == 0:
            row = json.loads(out.stdout.strip().splitlines()[-1])
            if best is None or row["tasks_per_s"] > best["tasks_per_s"]:
                best = row
    return best


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--baseline", default=DEFAULT_BASELINE, help="git ref to compare with")
    parser.add_argument("--no-baseline", action="store_true", help="time this tree only")
    parser.add_argument("--repeats", type=int, default=3, help="alternated runs of each tree")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per run")
    parser.add_argument("--jit", action="store_true", help="compile with XLA")
    parser.add_argument("--no-peer", action="store_true", help="skip the PyTorch peer")
    parser.add_argument("--single", help=argparse.SUPPRESS)
    parser.add_argument("--json", help="also write the rows to this JSON file")
    parser.add_argument(
        "--this-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="environment of this tree's runs only (e.g. TF_ENABLE_ONEDNN_OPTS=0 with "
        "--baseline HEAD compares one setting on the same code)",
    )
    args = parser.parse_args(argv)
    if args.single:
        print(json.dumps(run_one(json.loads(args.single))))
        return
    args.this_env_dict = {}
    for item in args.this_env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--this-env takes KEY=VALUE; received {item!r}")
        args.this_env_dict[key] = value
    names = [n for n in args.workloads.split(",") if n]
    unknown = sorted(set(names) - set(WORKLOADS))
    if unknown:
        parser.error(f"unknown workloads {unknown}; known: {', '.join(WORKLOADS)}")

    trees = {"this": ROOT}
    tmp = None
    if not args.no_baseline:
        tmp = tempfile.mkdtemp(prefix="km-baseline-")
        base = os.path.join(tmp, "tree")
        subprocess.run(
            ["git", "-C", ROOT, "worktree", "add", "--detach", base, args.baseline],
            check=True,
            capture_output=True,
        )
        trees["base"] = base
    try:
        _report(args, names, trees)
    finally:
        if tmp:
            subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", trees["base"]])
            shutil.rmtree(tmp, ignore_errors=True)


def _report(args, names, trees) -> None:
    ceiling = matmul_gflops()
    print(
        f"# Meta-training throughput — {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, python {platform.python_version()}; float32 matmul "
        f"(2048²) {ceiling:.0f} GFLOP/s; best of {args.repeats} alternated runs, "
        f"{args.steps} steps each; baseline {args.baseline if 'base' in trees else 'none'}"
        f"{'; XLA on' if args.jit else ''}"
        f"{'; this tree with ' + ' '.join(args.this_env) if args.this_env else ''}\n"
    )
    print(
        "| workload | base ms/step | this ms/step | speed-up | this tasks/s | GFLOP/step "
        "| GFLOP/s | of matmul | CPU s/step base / this | peak MB base / this "
        "| peer tasks/s (torch) | this / peer |"
    )
    print("|" + "---|" * 12)
    rows = []
    for name in names:
        cfg = {**WORKLOADS[name], "name": name, "jit": args.jit, "steps": args.steps}
        best: dict[str, dict] = {}
        for _ in range(args.repeats):
            for label, tree in trees.items():
                row = _run(tree, cfg, args.this_env_dict if label == "this" else None)
                if label not in best or row["step_ms"] < best[label]["step_ms"]:
                    best[label] = row
        this = best["this"]
        base = best.get("base")
        peer = None if args.no_peer else _peer(cfg, args.steps)
        gflops = this["gflop"] / (this["step_ms"] / 1000)
        cells = [
            name,
            f"{base['step_ms']:.0f}" if base else "–",
            f"{this['step_ms']:.0f}",
            f"{base['step_ms'] / this['step_ms']:.2f}×" if base else "–",
            f"{this['tasks_per_s']:.1f}",
            f"{this['gflop']:.2f}",
            f"{gflops:.1f}",
            f"{100 * gflops / ceiling:.0f} %",
            (f"{base['cpu_ms'] / 1000:.2f} / " if base else "") + f"{this['cpu_ms'] / 1000:.2f}",
            f"{base['peak_mb']:.0f} / {this['peak_mb']:.0f}" if base else f"{this['peak_mb']:.0f}",
            f"{peer['tasks_per_s']:.1f} ({peer['peer']})" if peer else "–",
            f"{this['tasks_per_s'] / peer['tasks_per_s']:.2f}" if peer else "–",
        ]
        print("| " + " | ".join(cells) + " |", flush=True)
        rows.append({"workload": name, "this": this, "base": base, "peer": peer})
    print(f"\n(device: {rows[0]['this']['device'] if rows else '?'}; peak MB = peak RSS on CPU)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"matmul_gflops": ceiling, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
