"""The one place that touches Keras internals: the BatchNorm moments patch
fails loudly when Keras lacks what it patches, and is safe under threads."""

import threading
import types

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras.src.backend.tensorflow import nn as keras_tf_nn

import keras_meta as km
from keras_meta import _keras_compat
from keras_meta._moments import exact_moments_fn


def test_patch_of_a_missing_function_names_keras_version_and_symbol():
    patch = _keras_compat.AttributePatch(
        types.SimpleNamespace(), "_compute_moments", where="a stand-in module"
    )
    with pytest.raises(RuntimeError, match=r"`_compute_moments`.*Keras " + keras.__version__):
        with patch.patched(exact_moments_fn):
            pass
    # The failed entry leaves no user behind: a module that has the function works.
    module = types.SimpleNamespace(_compute_moments=np.mean)
    with _keras_compat.AttributePatch(module, "_compute_moments", "m").patched(np.std):
        assert module._compute_moments is np.std
    assert module._compute_moments is np.mean


def test_overlapping_users_in_two_threads_restore_the_original():
    # A enters, B enters while A is inside, A leaves first: B must still see
    # the replacement, and the original must be back once B leaves.
    module = types.SimpleNamespace(_compute_moments=np.mean)
    patch = _keras_compat.AttributePatch(module, "_compute_moments", "m")
    a_inside, b_inside, a_left = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def a():
        with patch.patched(np.std):
            a_inside.set()
            b_inside.wait(10)
        a_left.set()

    def b():
        a_inside.wait(10)
        with patch.patched(np.std):
            b_inside.set()
            a_left.wait(10)
            seen["b"] = module._compute_moments

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert seen["b"] is np.std
    assert module._compute_moments is np.mean


def test_two_learners_tracing_at_once_leave_keras_unpatched():
    original = keras_tf_nn._compute_moments
    rng = np.random.default_rng(0)
    x = {
        "support_x": rng.normal(size=(2, 4, 3)).astype("float32"),
        "support_y": np.tile([0, 1, 0, 1], (2, 1)).astype("int32"),
        "query_x": rng.normal(size=(2, 4, 3)).astype("float32"),
    }
    errors = []

    def trace(seed):
        try:
            keras.utils.set_random_seed(seed)
            net = keras.Sequential(
                [
                    keras.Input((3,)),
                    keras.layers.Dense(4),
                    keras.layers.BatchNormalization(),
                    keras.layers.Dense(2),
                ]
            )
            learner = km.MAML(net, inner_learning_rate=0.1, inner_steps=2)
            learner.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
            for _ in range(3):
                # A fresh tf.function each time: every call traces again.
                tf.function(lambda v: learner(v))(x)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=trace, args=(s,)) for s in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors
    assert keras_tf_nn._compute_moments is original


def test_only_the_compat_module_reaches_keras_internals():
    # Every `keras.src` import and every private Keras attribute the package
    # uses goes through keras_meta/_keras_compat.py, so a Keras release that
    # changes one is fixed in one place.
    import pathlib
    import re

    package = pathlib.Path(km.__file__).parent
    private = re.compile(
        r"keras\.src|\._flatten_layers|\._call_has_training_arg|\._loss_tracker"
        r"|\._compile_metrics|\._compute_moments|\._symbolic_build|reduce_per_replica"
    )
    offenders = [
        f"{path.relative_to(package)}:{number}: {line.strip()}"
        for path in sorted(package.rglob("*.py"))
        if path.name != "_keras_compat.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if private.search(line)
    ]
    assert not offenders, "\n".join(offenders)
