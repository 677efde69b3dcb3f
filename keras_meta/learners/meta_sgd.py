"""Meta-SGD (Li et al., 2017): MAML with a learned per-element inner rate."""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_meta.learners.gradient import GradientLearner


@keras.saving.register_keras_serializable(package="keras_meta")
class MetaSGD(GradientLearner):
    """Meta-SGD: meta-learns the inner learning rate of every weight element.

    The inner update is `φ = θ − α ⊙ ∇L_support(θ)`, where `α` has the shape
    of `θ` (one rate per element of every adapted weight). `α` starts at
    `inner_learning_rate` and is meta-trained with `θ` by the compiled
    optimizer: the rates are weights of the learner (in
    `learner.trainable_variables`, saved in `.keras` files), and the
    meta-gradient reaches them through the inner update.

    Args:
        model: any `keras.Model` (Functional, Sequential or subclassed).
        inner_learning_rate: the initial value of every learned rate.
        inner_steps: inner steps during `fit` (the paper uses 1); every step
            uses the same rates.
        eval_inner_steps: inner steps in `evaluate`/`predict`/`adapt`
            (default: `inner_steps`).
        first_order: drop the second-order terms of the meta-gradient (the
            rates are still learned: `φ` depends on `α` directly).
        adapt_layers: layers adapted in the inner loop (default: all); only
            those get rates.
        bn_mode: `"transductive"` or `"running"`, see `MetaLearner`.

    Example:

    >>> import keras, keras_meta as km
    >>> net = keras.Sequential([keras.Input((1,)), keras.layers.Dense(40, "relu"),
    ...                         keras.layers.Dense(1)])
    >>> learner = km.MetaSGD(net, inner_learning_rate=0.01, inner_steps=1)
    >>> learner.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    >>> tasks = km.data.sinusoid(shots=10, queries=10, seed=0).batch(4)
    >>> history = learner.fit(tasks, steps_per_epoch=2, epochs=1, verbose=0)
    >>> [tuple(r.shape) for r in learner.inner_rates]
    [(1, 40), (40,), (40, 1), (1,)]
    """

    def __init__(
        self,
        model,
        inner_learning_rate: float = 0.01,
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
        # One entry per trainable weight of the model; None where not adapted.
        self._rates = []
        self._maybe_build_meta_weights()

    def build_meta_weights(self):
        rates = []
        for variable, adapted in zip(self.model.trainable_variables, self.adapted_mask()):
            if not adapted:
                rates.append(None)
                continue
            rates.append(
                self.add_weight(
                    shape=variable.shape,
                    initializer=keras.initializers.Constant(self.inner_learning_rate),
                    dtype=variable.dtype,
                    name=variable.path.replace("/", "_") + "_inner_rate",
                )
            )
        self._rates = rates

    @property
    def inner_rates(self) -> list:
        """The learned rates, one variable per adapted weight (model order)."""
        return [r for r in self._rates if r is not None]

    def inner_update(self, step: int, index: int, param, grad):
        return param - tf.cast(self._rates[index], param.dtype) * grad
