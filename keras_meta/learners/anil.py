"""ANIL (Raghu et al., 2020): MAML whose inner loop adapts only the head."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras

from keras_meta.learners.gradient import GradientLearner


@keras.saving.register_keras_serializable(package="keras_meta")
class ANIL(GradientLearner):
    """Almost No Inner Loop: only the `head` layers adapt to each task.

    The inner loop takes SGD steps on the weights of the `head` layers; the
    other layers (the body) keep their meta-learned weights in every
    episode. The meta-gradient is MAML's, for every weight: the body is
    meta-trained through the head's adaptation (second order unless
    `first_order=True`).

    The whole model runs at every inner step (the wrapped model is a black
    box, so the body's features are not cached); ANIL saves the inner
    gradients and updates of the body, not its forward passes.

    Args:
        model: any `keras.Model` (Functional, Sequential or subclassed).
        head: the layers adapted in the inner loop: a layer name, a list of
            layer names (nested layers included), or a predicate
            `layer -> bool` (not serialisable; prefer names).
        inner_learning_rate: the inner SGD step size.
        inner_steps: inner steps during `fit`.
        eval_inner_steps: inner steps in `evaluate`/`predict`/`adapt`
            (default: `inner_steps`).
        first_order: drop the second-order terms of the meta-gradient.
        bn_mode: `"transductive"` or `"running"`, see `MetaLearner`.

    Example:

    >>> import keras, keras_meta as km
    >>> net = keras.Sequential([keras.Input((1,)), keras.layers.Dense(40, "relu"),
    ...                         keras.layers.Dense(1, name="head")])
    >>> learner = km.ANIL(net, head="head", inner_learning_rate=0.01, inner_steps=2)
    >>> learner.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    >>> tasks = km.data.sinusoid(shots=10, queries=10, seed=0).batch(4)
    >>> history = learner.fit(tasks, steps_per_epoch=2, epochs=1, verbose=0)
    """

    def __init__(
        self,
        model,
        head: str | Sequence[str] | Callable,
        inner_learning_rate: float = 0.4,
        inner_steps: int = 1,
        eval_inner_steps: int | None = None,
        first_order: bool = False,
        **kwargs,
    ):
        if "adapt_layers" in kwargs:
            raise TypeError("ANIL takes the adapted layers as `head`, not `adapt_layers`.")
        if head is None or (
            not isinstance(head, str)
            and not callable(head)
            and (
                not isinstance(head, Sequence)
                or not head
                or not all(isinstance(name, str) for name in head)
            )
        ):
            raise ValueError(
                "Expected `head` to be a layer name, a non-empty list of layer "
                f"names or a predicate `layer -> bool`; received {head!r}."
            )
        super().__init__(
            model,
            inner_learning_rate=inner_learning_rate,
            inner_steps=inner_steps,
            eval_inner_steps=eval_inner_steps,
            first_order=first_order,
            adapt_layers=head,
            **kwargs,
        )
        if self.model.built and self.model.weights:
            # Unknown layer names fail here rather than at the first step.
            self.adapted_mask()

    @property
    def head(self):
        """The adapted layers, as given (names or a predicate)."""
        return self.adapt_layers

    def get_config(self):
        config = super().get_config()
        config["head"] = config.pop("adapt_layers")
        return config
