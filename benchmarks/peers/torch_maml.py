"""MAML meta-training throughput in PyTorch (`torch.func`), as a peer for keras_meta.

The same meta-training step as `benchmarks/throughput.py` runs with keras_meta:
the conv4 network of MAML on 28x28x1 inputs (`--pooling strided`, the default:
4 x [3x3 stride-2 "same" conv, 64 filters; BatchNorm with a bias and no scale;
ReLU], mean over the last 2x2 map, dense head; or `--pooling max`: 4 x [3x3
stride-1 "same" conv; BatchNorm with scale and bias; ReLU; 2x2 max-pool],
flatten, dense head), `--inner-steps` steps of plain SGD on the support
cross-entropy adapting every parameter, the mean query cross-entropy over the
meta-batch as outer loss (second order unless `--first-order`), and one
Adam(1e-3) step per iteration. Data is one constant random batch.

`--mode vmap` (default) vmaps a per-episode function that adapts with
`torch.func.grad` over the meta-batch; `--mode loop` loops over the episodes in
Python with `torch.autograd.grad(create_graph=True)`, as higher/learn2learn do.
BatchNorm always normalizes with the statistics of the batch it is given (each
episode's support or query set), never with running statistics.

    python benchmarks/peers/torch_maml.py --ways 5 --shots 1 --queries 1 \\
        --meta-batch 32 --inner-steps 1 --inner-lr 0.4 --steps 10 --warmup 3 --json
    python benchmarks/peers/torch_maml.py --check

PyTorch is needed only here, never by keras_meta itself.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

# Keras's defaults, so that the workload matches keras_meta's exactly.
BN_EPSILON = 1e-3
ADAM_EPSILON = 1e-7


def tf_same_pad(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """Pads an NCHW tensor the way TensorFlow's `padding="same"` does.

    The output size is `ceil(size / stride)`; the padding needed for it is split
    with the smaller half first (top/left), so a stride-2 3x3 convolution of an
    even size pads 0 before and 1 after, unlike PyTorch's symmetric `padding=1`.
    """
    pads = []
    for size in (x.shape[-1], x.shape[-2]):  # F.pad lists the last dimension first.
        out = -(-size // stride)
        total = max((out - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class TFSameConv2d(nn.Conv2d):
    """A 3x3 convolution with TensorFlow's "same" padding (explicit, then unpadded)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int):
        super().__init__(in_channels, out_channels, kernel, stride=stride, padding=0)
        # Keras's initializers: Glorot-uniform kernel, zero bias.
        nn.init.xavier_uniform_(self.weight)
        nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = tf_same_pad(x, self.kernel_size[0], self.stride[0])
        return F.conv2d(x, self.weight, self.bias, self.stride)


class BatchStatNorm(nn.Module):
    """BatchNorm over (N, H, W) that always uses the statistics of its input.

    Keras's `BatchNormalization(scale=scale)` in training mode: a learned bias
    (beta), a learned scale (gamma) only if `scale`, epsilon 1e-3. Running
    statistics are not kept: every forward pass is a training-mode one.
    """

    def __init__(self, channels: int, scale: bool):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))
        self.weight = nn.Parameter(torch.ones(channels)) if scale else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        var, mean = torch.var_mean(x, dim=(0, 2, 3), correction=0, keepdim=True)
        y = (x - mean) * torch.rsqrt(var + BN_EPSILON)
        if self.weight is not None:
            y = y * self.weight.view(1, -1, 1, 1)
        return y + self.bias.view(1, -1, 1, 1)


class Conv4(nn.Module):
    """The conv4 network of `keras_meta.models.conv4`, in NCHW."""

    def __init__(self, ways: int, pooling: str = "strided", filters: int = 64, activation=F.relu):
        super().__init__()
        self.activation = activation
        if pooling not in ("strided", "max"):
            raise ValueError(f"pooling must be 'strided' or 'max'; received {pooling!r}")
        self.pooling = pooling
        stride = 2 if pooling == "strided" else 1
        self.convs = nn.ModuleList(
            TFSameConv2d(1 if i == 0 else filters, filters, 3, stride) for i in range(4)
        )
        # MAML's strided network has no BN scale; the max-pool one has both.
        self.norms = nn.ModuleList(BatchStatNorm(filters, scale=pooling == "max") for _ in range(4))
        self.head = nn.Linear(filters, ways)
        nn.init.xavier_uniform_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv, norm in zip(self.convs, self.norms):
            x = self.activation(norm(conv(x)))
            if self.pooling == "max":
                x = F.max_pool2d(x, 2)  # Keras's MaxPooling2D(2): "valid", 7 -> 3.
        if self.pooling == "strided":
            x = x.mean(dim=(2, 3))  # GlobalAveragePooling2D over the 2x2 map.
        else:
            x = x.flatten(1)  # 1x1x64 -> 64
        return self.head(x)


class MAML:
    """The meta-objective of MAML over a meta-batch, in two implementations."""

    def __init__(self, model: nn.Module, inner_steps: int, inner_lr: float, first_order: bool):
        self.model = model
        self.inner_steps = inner_steps
        self.inner_lr = inner_lr
        self.first_order = first_order

    def loss(self, params: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(self.model, params, (x,)), y)

    # --- torch.func: vmap over episodes, grad for the inner step ------------
    def episode_loss(self, params, support_x, support_y, query_x, query_y):
        for _ in range(self.inner_steps):
            grads = grad(self.loss)(params, support_x, support_y)
            if self.first_order:
                grads = {k: g.detach() for k, g in grads.items()}
            params = {k: p - self.inner_lr * grads[k] for k, p in params.items()}
        return self.loss(params, query_x, query_y)

    def vmap_loss(self, params, support_x, support_y, query_x, query_y):
        losses = vmap(self.episode_loss, in_dims=(None, 0, 0, 0, 0))(
            params, support_x, support_y, query_x, query_y
        )
        return losses.mean()

    # --- classic: Python loop over episodes, autograd.grad(create_graph) ----
    def loop_loss(self, params, support_x, support_y, query_x, query_y):
        losses = []
        for i in range(support_x.shape[0]):
            fast = params
            for _ in range(self.inner_steps):
                inner = self.loss(fast, support_x[i], support_y[i])
                grads = torch.autograd.grad(
                    inner, tuple(fast.values()), create_graph=not self.first_order
                )
                fast = {k: p - self.inner_lr * g for (k, p), g in zip(fast.items(), grads)}
            losses.append(self.loss(fast, query_x[i], query_y[i]))
        return torch.stack(losses).mean()


def make_batch(meta_batch, ways, shots, queries, dtype=torch.float32, seed=0):
    """One constant random batch, like keras_meta's benchmark (NCHW images)."""
    gen = torch.Generator().manual_seed(seed)
    support_x = torch.rand(meta_batch, ways * shots, 1, 28, 28, generator=gen, dtype=dtype)
    query_x = torch.rand(meta_batch, ways * queries, 1, 28, 28, generator=gen, dtype=dtype)
    support_y = torch.arange(ways).repeat_interleave(shots).expand(meta_batch, -1).contiguous()
    query_y = torch.arange(ways).repeat_interleave(queries).expand(meta_batch, -1).contiguous()
    return support_x, support_y, query_x, query_y


def meta_gradient(maml: MAML, mode: str, batch) -> list[torch.Tensor]:
    params = dict(maml.model.named_parameters())
    objective = maml.vmap_loss if mode == "vmap" else maml.loop_loss
    return list(torch.autograd.grad(objective(params, *batch), tuple(params.values())))


def finite_difference(model: Conv4, batch) -> tuple[float, float]:
    """The second-order meta-gradient is the true one (float64).

    A central finite difference of the meta-loss along a random direction
    matches the gradient's directional derivative. With ReLU the meta-loss is
    discontinuous (the inner gradient jumps wherever a unit's input crosses 0,
    so a finite difference never converges), hence the same weights with
    softplus; max-pooling has the same kinks, so this runs on strided models.
    """
    smooth = Conv4(model.head.out_features, model.pooling, activation=F.softplus).double()
    smooth.load_state_dict(model.state_dict())
    maml = MAML(smooth, inner_steps=2, inner_lr=0.4, first_order=False)
    gradient = meta_gradient(maml, "vmap", batch)
    params = {k: p.detach() for k, p in smooth.named_parameters()}
    direction = {k: torch.randn_like(p) for k, p in params.items()}
    analytic = float(sum((g * d).sum() for g, d in zip(gradient, direction.values())))
    h = 1e-6
    losses = []
    for t in (h, -h):
        moved = {k: p + t * direction[k] for k, p in params.items()}
        with torch.no_grad():  # torch.func.grad inside still differentiates
            losses.append(float(maml.vmap_loss(moved, *batch)))
    numeric = (losses[0] - losses[1]) / (2 * h)
    assert abs(numeric - analytic) <= 1e-6 * abs(analytic), (numeric, analytic)
    return numeric, analytic


def check() -> None:
    """vmap and loop agree; second order differs from first order (float64)."""
    torch.manual_seed(0)
    for pooling in ("strided", "max"):
        model = Conv4(ways=3, pooling=pooling).double()
        batch = make_batch(3, ways=3, shots=2, queries=2, dtype=torch.float64)
        grads = {}
        for first_order in (False, True):
            maml = MAML(model, inner_steps=2, inner_lr=0.4, first_order=first_order)
            for mode in ("vmap", "loop"):
                grads[mode, first_order] = meta_gradient(maml, mode, batch)
        names = [name for name, _ in model.named_parameters()]
        for first_order in (False, True):
            vmapped, looped = grads["vmap", first_order], grads["loop", first_order]
            total = torch.cat([g.flatten() for g in looped]).norm()
            for name, a, b in zip(names, vmapped, looped):
                # The conv biases feed a BatchNorm, which subtracts their effect:
                # their gradient is zero up to rounding (~1e-16), hence the floor.
                err = (a - b).norm() / torch.maximum(b.norm(), 1e-6 * total)
                assert err <= 1e-9, (pooling, first_order, name, float(err))
        second = torch.cat([g.flatten() for g in grads["vmap", False]])
        first = torch.cat([g.flatten() for g in grads["vmap", True]])
        rel = float((second - first).norm() / second.norm())
        assert rel > 1e-6, (pooling, rel)
        print(f"{pooling}: vmap == loop (2nd and 1st order); |2nd - 1st| / |2nd| = {rel:.3g}")
        if pooling == "strided":
            numeric, analytic = finite_difference(model, batch)
            print(
                f"{pooling}, softplus: finite difference {numeric:.10g}, 2nd order {analytic:.10g}"
            )
    print("check ok")


def benchmark(args) -> dict:
    torch.manual_seed(args.seed)
    model = Conv4(args.ways, args.pooling)
    maml = MAML(model, args.inner_steps, args.inner_lr, args.first_order)
    batch = make_batch(args.meta_batch, args.ways, args.shots, args.queries, seed=args.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=ADAM_EPSILON)
    objective = maml.vmap_loss if args.mode == "vmap" else maml.loop_loss
    params = dict(model.named_parameters())

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = objective(params, *batch)
        loss.backward()
        optimizer.step()
        return loss

    for _ in range(args.warmup):
        step()
    start = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    loss.item()  # synchronizes, should the step ever run asynchronously
    seconds = time.perf_counter() - start
    return {
        "peer": "torch.func" if args.mode == "vmap" else "torch-loop",
        "torch_version": torch.__version__,
        "threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "tasks_per_s": args.steps * args.meta_batch / seconds,
        "step_ms": 1000 * seconds / args.steps,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "ways": args.ways,
        "shots": args.shots,
        "queries": args.queries,
        "meta_batch": args.meta_batch,
        "inner_steps": args.inner_steps,
        "inner_lr": args.inner_lr,
        "first_order": args.first_order,
        "pooling": args.pooling,
        "mode": args.mode,
        "steps": args.steps,
        "warmup": args.warmup,
        "final_loss": loss.item(),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ways", type=int, default=5)
    parser.add_argument("--shots", type=int, default=1)
    parser.add_argument("--queries", type=int, default=15)
    parser.add_argument("--meta-batch", type=int, default=32)
    parser.add_argument("--inner-steps", type=int, default=1)
    parser.add_argument("--inner-lr", type=float, default=0.4)
    parser.add_argument("--first-order", action="store_true")
    parser.add_argument("--pooling", choices=["strided", "max"], default="strided")
    parser.add_argument("--mode", choices=["vmap", "loop"], default="vmap")
    parser.add_argument("--steps", type=int, default=10, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count(), help="torch threads (default: all CPUs)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument("--check", action="store_true", help="check vmap == loop and exit")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0:
        parser.error("--steps must be >= 1 and --warmup >= 0")
    torch.set_num_threads(args.threads)
    if args.check:
        check()
        return
    row = benchmark(args)
    if args.json:
        print(json.dumps(row))
    else:
        order = "1st" if args.first_order else "2nd"
        print(
            f"{row['peer']} {torch.__version__} ({row['threads']} threads): "
            f"{args.ways}-way {args.shots}-shot {args.queries}-query, "
            f"meta-batch {args.meta_batch}, {args.inner_steps} inner step(s), {order} order, "
            f"{args.pooling}: {row['tasks_per_s']:.1f} tasks/s, {row['step_ms']:.0f} ms/step, "
            f"peak {row['peak_mb']:.0f} MB"
        )


if __name__ == "__main__":
    main()
