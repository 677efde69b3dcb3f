"""MAML (Finn et al., 2017) and first-order MAML."""

from __future__ import annotations

import keras

from keras_meta.learners.gradient import GradientLearner


@keras.saving.register_keras_serializable(package="keras_meta")
class MAML(GradientLearner):
    """Model-Agnostic Meta-Learning.

    The inner loop takes `inner_steps` SGD steps on each episode's support
    loss; the meta-gradient is the gradient of the mean query loss after
    adaptation, differentiated through the inner loop (second order) unless
    `first_order=True`.

    Args:
        model: any `keras.Model` (Functional, Sequential or subclassed).
        inner_learning_rate: the inner SGD step size (α in the paper).
        inner_steps: inner steps during `fit`.
        eval_inner_steps: inner steps in `evaluate`/`predict`/`adapt`
            (default: `inner_steps`).
        first_order: first-order MAML (FOMAML).
        adapt_layers: layers adapted in the inner loop (default: all).
        bn_mode: `"transductive"` or `"running"`, see `MetaLearner`.

    Example:

    >>> import keras, keras_meta as km
    >>> net = keras.Sequential([keras.Input((1,)), keras.layers.Dense(40, "relu"),
    ...                         keras.layers.Dense(40, "relu"), keras.layers.Dense(1)])
    >>> learner = km.MAML(net, inner_learning_rate=0.01, inner_steps=1)
    >>> learner.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    >>> tasks = km.data.sinusoid(shots=10, queries=10, seed=0).batch(25)
    >>> history = learner.fit(tasks, steps_per_epoch=2, epochs=1, verbose=0)
    """

    def __init__(
        self,
        model,
        inner_learning_rate: float = 0.4,
        inner_steps: int = 1,
        eval_inner_steps: int | None = None,
        first_order: bool = False,
        **kwargs,
    ):
        super().__init__(
            model,
            inner_learning_rate=inner_learning_rate,
            inner_steps=inner_steps,
            eval_inner_steps=eval_inner_steps,
            first_order=first_order,
            **kwargs,
        )
