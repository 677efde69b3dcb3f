"""Helpers shared by the test files: synthetic few-shot tasks, small models,
float64 references written with raw TensorFlow or numpy, and the assertion
blocks that several learners' tests repeat.

conftest.py puts this folder on `sys.path`; import with `from helpers import ...`.
"""

import importlib.util
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_benchmark(name):
    """Imports `benchmarks/NAME.py` (a script, not a package) as a module."""
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(REPO, "benchmarks", f"{name}.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------
# Synthetic tasks.
# ---------------------------------------------------------------------------
def cluster_tasks(
    n,
    seed=0,
    ways=5,
    shots=1,
    queries=5,
    dim=8,
    informative=4,
    noise=1.5,
    shuffled=False,
    signal_noise=0.3,
):
    """`n` N-way K-shot episodes of Gaussian clusters, as `(x, query_y)`.

    Class means are drawn per episode in the first `informative` dims
    (scale 2); every example adds noise of scale `signal_noise` there and
    `noise` in the other dims, which meta-learning can learn to ignore. Labels are in
    class order (`[0, 0, 1, 1, ...]`), or, with `shuffled`, a random
    permutation of `[0, 1, ..., 0, 1, ...]` per episode.
    """
    rng = np.random.default_rng(seed)
    means = np.zeros((n, ways, dim))
    means[..., :informative] = rng.normal(size=(n, ways, informative)) * 2.0
    scale = np.full(dim, noise)
    scale[:informative] = signal_noise

    def draw(k):
        if shuffled:
            y = np.tile(np.arange(ways), (n, k))
            y = np.stack([rng.permutation(row) for row in y])
        else:
            y = np.tile(np.repeat(np.arange(ways), k), (n, 1))
        x = np.take_along_axis(means, y[..., None], 1)
        x = x + rng.normal(size=x.shape) * scale
        return x.astype("float32"), y.astype("int32")

    sx, sy = draw(shots)
    qx, qy = draw(queries)
    return {"support_x": sx, "support_y": sy, "query_x": qx}, qy


def noisy_cluster_tasks(n, seed=0, ways=5, shots=1, queries=5, dim=8):
    """Episodes for the embedding learners: only two features separate the
    classes and the others are large noise, so a nearest-prototype rule in
    input space is poor and the embedding has something to learn."""
    return cluster_tasks(
        n, seed, ways, shots, queries, dim, informative=2, noise=3.0, shuffled=True
    )


def regression_batch(rng, b=2, s=5, q=4, d=3, target=np.sin):
    """`b` float64 episodes of `target(x @ a)`, a random `a` per episode."""
    sx, qx = rng.normal(size=(b, s, d)), rng.normal(size=(b, q, d))
    a = rng.normal(size=(b, d, 1))
    return {"support_x": sx, "support_y": target(sx @ a), "query_x": qx}, target(qx @ a)


def episode_list(x, y):
    """The batch `(x, y)` as a list of `(support_x, support_y, query_x, query_y)`."""
    return [(x["support_x"][i], x["support_y"][i], x["query_x"][i], y[i]) for i in range(len(y))]


# ---------------------------------------------------------------------------
# Distribution.
# ---------------------------------------------------------------------------
def mirrored_strategy():
    """A MirroredStrategy over two logical CPU devices (conftest.py sets them
    up), or a skip that says why there are not two."""
    devices = tf.config.list_logical_devices("CPU")
    if len(devices) < 2:
        pytest.skip(
            f"MirroredStrategy needs two logical CPU devices; TensorFlow has {len(devices)} "
            "(conftest.py splits the CPU before TensorFlow initialises its devices: an "
            "earlier import initialised them)"
        )
    return tf.distribute.MirroredStrategy([d.name for d in devices[:2]])


# ---------------------------------------------------------------------------
# Models and losses.
# ---------------------------------------------------------------------------
def ce():
    # Built per test: a Loss takes the float dtype current at construction.
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def dense_net(inputs, outputs, hidden=(), activation="relu", names=None):
    """Input -> Dense(h, activation) for h in `hidden` -> Dense(outputs).

    `activation` is one for all hidden layers or a sequence of one each;
    `names` names the Dense layers, in order (None lets Keras name them).
    """
    if isinstance(activation, str):
        activation = [activation] * len(hidden)
    names = names or [None] * (len(hidden) + 1)
    layers = [keras.Input((inputs,))]
    layers += [
        keras.layers.Dense(h, act, name=name) for h, act, name in zip(hidden, activation, names)
    ]
    return keras.Sequential(layers + [keras.layers.Dense(outputs, name=names[-1])])


def classifier(names=None):
    """The 5-way classifier of the `cluster_tasks` learning tests."""
    return dense_net(8, 5, (32,), names=names)


def relu_mlp(inputs=8, hidden=32, outputs=16, batchnorm=False):
    """Input -> Dense(hidden) [-> BatchNormalization] -> ReLU -> Dense(outputs)."""
    layers = [keras.Input((inputs,)), keras.layers.Dense(hidden)]
    if batchnorm:
        layers.append(keras.layers.BatchNormalization())
    layers += [keras.layers.ReLU(), keras.layers.Dense(outputs)]
    return keras.Sequential(layers)


def linear_embedding(kernel):
    """A bias-free Dense layer whose kernel is `kernel`."""
    net = keras.Sequential(
        [keras.Input((kernel.shape[0],)), keras.layers.Dense(kernel.shape[1], use_bias=False)]
    )
    net.layers[0].kernel.assign(kernel)
    return net


def small_episodes(seed=0, b=2, support=6, features=3, support_labels=None):
    """`b` tiny 3-way episodes: `support` examples, 4 queries with random labels."""
    rng = np.random.default_rng(seed)
    if support_labels is None:
        support_labels = np.arange(support) % 3
    x = {
        "support_x": rng.normal(size=(b, support, features)).astype("float32"),
        "support_y": np.tile(support_labels, (b, 1)).astype("int32"),
        "query_x": rng.normal(size=(b, 4, features)).astype("float32"),
    }
    return x, rng.integers(0, 3, (b, 4)).astype("int32")


# ---------------------------------------------------------------------------
# References with raw TensorFlow ops (no Keras, no keras_meta) and numpy.
# ---------------------------------------------------------------------------
def mlp_forward(w, x, activations=(tf.nn.tanh, tf.nn.relu)):
    """A dense network on explicit weights `[kernel, bias, kernel, bias, ...]`."""
    h = x
    for i, activation in enumerate(activations):
        h = activation(h @ w[2 * i] + w[2 * i + 1])
    return h @ w[-2] + w[-1]


def mse(y, p):
    return tf.reduce_mean(tf.square(y - p))


def sparse_ce(y, logits):
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))


def reference_meta_loss(forward, loss, w, episodes, rates, steps, first_order, adapted=None):
    """Mean over episodes of the query loss after `steps` inner SGD steps.

    `rates` is one inner learning rate, or one per weight (each a number or
    an array of the weight's shape); `adapted` lists the indices of the
    weights the inner loop adapts (all by default).
    """
    adapted = range(len(w)) if adapted is None else adapted
    total = 0.0
    for sx, sy, qx, qy in episodes:
        fast = list(w)
        for _ in range(steps):
            params = [fast[i] for i in adapted]
            with tf.GradientTape() as tape:
                tape.watch(params)
                inner = loss(sy, forward(fast, sx))
            grads = tape.gradient(inner, params)
            if first_order:
                grads = [tf.stop_gradient(g) for g in grads]
            for i, p, g in zip(adapted, params, grads):
                rate = rates[i] if isinstance(rates, (list, tuple)) else rates
                fast[i] = p - rate * g
        total += loss(qy, forward(fast, qx))
    return total / len(episodes)


def assert_matches_central_differences(f, values, grads, rtol, atol, count=None, eps=1e-6):
    """`grads[k][idx]` is the central finite difference of the scalar
    `f(values)` in `values[k][idx]`, for each array `values[k]` (a number
    counts as a 0-d array) and its first `count` entries (all by default)."""
    for k, value in enumerate(values):
        for idx in list(np.ndindex(*np.shape(value)))[:count]:
            plus = [np.array(v, copy=True) for v in values]
            minus = [np.array(v, copy=True) for v in values]
            plus[k][idx] += eps
            minus[k][idx] -= eps
            fd = (f(plus) - f(minus)) / (2 * eps)
            np.testing.assert_allclose(np.asarray(grads[k])[idx], fd, rtol=rtol, atol=atol)


def np_softmax(z):
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def np_cross_entropy(logits, y):
    """Mean sparse softmax cross-entropy of `logits` [N, C] for labels `y` [N]."""
    logits = logits - logits.max(-1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return -logp[np.arange(len(y)), y].mean()


# ---------------------------------------------------------------------------
# Assertion blocks.
# ---------------------------------------------------------------------------
def assert_learns_cluster_tasks(learner, **fit_kwargs):
    """Meta-training on 800 `cluster_tasks` (batches of 8) lifts the query
    accuracy on 200 held-out tasks above 0.6 (chance: 0.2) and by 0.05."""
    test = cluster_tasks(200, seed=99)
    before = learner.evaluate(*test, batch_size=50, verbose=0, return_dict=True)
    train = tf.data.Dataset.from_tensor_slices(cluster_tasks(8 * 100, seed=1)).batch(8)
    learner.fit(train, **{"epochs": 1, "verbose": 0, **fit_kwargs})
    after = learner.evaluate(*test, batch_size=50, verbose=0, return_dict=True)
    assert after["accuracy"] > 0.6  # chance: 0.2
    assert after["accuracy"] > before["accuracy"] + 0.05


def assert_learns_noisy_clusters(learner_class, shots):
    """`learner_class` on a ReLU MLP embedding, trained with Adam on
    `noisy_cluster_tasks`, lifts the query accuracy above 0.6 (chance: 0.2)
    and by 0.2."""
    learner = learner_class(relu_mlp())
    learner.compile(optimizer=keras.optimizers.Adam(1e-2), metrics=["accuracy"])
    x, y = noisy_cluster_tasks(320, shots=shots, seed=1)
    x_test, y_test = noisy_cluster_tasks(100, shots=shots, seed=2)
    _, before = learner.evaluate(x_test, y_test, batch_size=50, verbose=0)
    learner.fit(x, y, batch_size=16, epochs=3, verbose=0)
    _, after = learner.evaluate(x_test, y_test, batch_size=50, verbose=0)
    # Chance is 0.2.
    assert after > 0.6, (before, after)
    assert after > before + 0.2, (before, after)


def save_and_load(learner, path):
    """`learner` saved to the `.keras` file `path` and loaded back."""
    learner.save(path)
    return keras.models.load_model(path)


def assert_same_config(learner, loaded):
    """The loaded learner has the learner's config, the wrapped model aside."""
    config = {k: v for k, v in learner.get_config().items() if k != "model"}
    assert {k: loaded.get_config()[k] for k in config} == config


def assert_variables_equal(a, b):
    assert len(a) == len(b)
    for va, vb in zip(a, b):
        np.testing.assert_array_equal(np.asarray(va), np.asarray(vb))


def assert_resumes_identically(learner, loaded, x, y, optimizer=True):
    """One more `train_on_batch` leaves the learner and its loaded copy with
    the same variables (and optimizer variables, with `optimizer`)."""
    learner.train_on_batch(x, y)
    loaded.train_on_batch(x, y)
    assert_variables_equal(learner.variables, loaded.variables)
    if optimizer:
        assert_variables_equal(learner.optimizer.variables, loaded.optimizer.variables)


def assert_exports_serve(learner, x, folder, expected=None, rtol=1e-5, atol=1e-6, serve_tol=None):
    """Plain TensorFlow serves the SavedModel exports of the model adapted to
    episode 0 of `x` and of the learner.

    The adapted model's `serve` must match its own predictions (`serve_tol`
    as `(rtol, atol)`, by default `rtol`, `atol`); the learner's
    `adapt_and_predict` must match `expected` (by default the learner's
    prediction for episode 0 of `x`). Returns the adapted model and the
    loaded learner export.
    """
    serve_rtol, serve_atol = serve_tol or (rtol, atol)
    support_x, support_y, query_x = x["support_x"][0], x["support_y"][0], x["query_x"][0]
    adapted = learner.adapt(support_x, support_y)
    adapted.export(str(folder / "adapted"), verbose=False)
    served = tf.saved_model.load(str(folder / "adapted"))
    np.testing.assert_allclose(
        served.serve(query_x).numpy(),
        adapted.predict(query_x, verbose=0),
        rtol=serve_rtol,
        atol=serve_atol,
    )
    if expected is None:
        expected = learner.predict(x, verbose=0)[0]
    learner.export(str(folder / "meta"), verbose=False)
    meta = tf.saved_model.load(str(folder / "meta"))
    np.testing.assert_allclose(
        meta.adapt_and_predict(support_x, support_y, query_x).numpy(),
        expected,
        rtol=rtol,
        atol=atol,
    )
    return adapted, meta


# ---------------------------------------------------------------------------
# Loopback workers of MultiWorkerMirroredStrategy.
# ---------------------------------------------------------------------------
REPO_ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def free_ports(n):
    """`n` distinct free TCP ports on 127.0.0.1 (held open together while chosen)."""
    import contextlib
    import socket

    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]


def start_loopback_worker(command, ports, index, log_path, extra_env=None):
    """Starts worker `index` of a cluster on 127.0.0.1 `ports` running `command`.

    The worker gets its own `TF_CONFIG`, this checkout on `PYTHONPATH` and CPU
    collectives (whatever accelerator the machine has); its output goes to
    `log_path`; it runs in its own session so `stop_workers` can kill what
    it started.
    """
    import json
    import os
    import subprocess

    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    env = dict(os.environ)
    env.update(
        TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
        PYTHONPATH=os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]),
        KERAS_BACKEND="tensorflow",
        TF_CPP_MIN_LOG_LEVEL="2",
        CUDA_VISIBLE_DEVICES="",
        **(extra_env or {}),
    )
    with open(log_path, "w") as log:
        return subprocess.Popen(
            command, env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip


def stop_workers(procs):
    """Kills the process group of every worker in `procs` still running."""
    import os
    import signal

    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(30)


# ---------------------------------------------------------------------------
# Real data.
# ---------------------------------------------------------------------------
def omniglot_subset(omniglot_dir, root, characters, drawings):
    """Writes images_<split>.zip into `root` with the first `characters[split]`
    characters (sorted) of each real archive and `drawings` drawings each, in
    the official layout; returns `root`."""
    import zipfile

    for split, count in characters.items():
        with zipfile.ZipFile(omniglot_dir / f"images_{split}.zip") as source:
            names = sorted(n for n in source.namelist() if n.endswith(".png"))
            by_character = {}
            for name in names:
                by_character.setdefault(name.rsplit("/", 1)[0], []).append(name)
            with zipfile.ZipFile(root / f"images_{split}.zip", "w") as target:
                for character in sorted(by_character)[:count]:
                    for name in by_character[character][:drawings]:
                        target.writestr(name, source.read(name))
    return root

