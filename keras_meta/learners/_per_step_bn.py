"""MAML++'s per-step BatchNorm (BNWB + BNRS): one copy of every BatchNorm
weight and moving statistic per inner step.

The copies are learner weights (`[steps, *shape]`); the statistics travel
through the loop over episodes as a `PerStepBatchNormState`, named by the
path of the model statistic each stands for.
"""

from __future__ import annotations

from typing import NamedTuple

import keras
import tensorflow as tf

from keras_meta import _keras_compat


class PerStepCopy(NamedTuple):
    """A per-step copy `[steps, *shape]` of one BatchNorm weight or statistic.

    `index` is the position of the model's own variable in its trainable
    (weights) or non-trainable (statistics) variables.
    """

    index: int
    variable: keras.Variable


class PerStepBatchNormState(NamedTuple):
    """What MAML with `per_step_bn` carries through the loop over episodes.

    `model`: the wrapped model's non-trainable values (as `forward` takes
    them); `statistics`: the per-step moving statistics, `[steps, *shape]`
    values keyed by the path of the model's statistic they stand for.

    Example:

    >>> state = PerStepBatchNormState([], {"bn/moving_mean": tf.zeros((2, 3))})
    >>> tuple(state.statistics["bn/moving_mean"].shape)
    (2, 3)
    """

    model: list
    statistics: dict


class PerStepBatchNorm:
    """The per-step copies of a learner's model, created as learner weights.

    Args:
        learner: the `keras.Model` that owns the copies (`add_weight`).
        model: the wrapped model; it must have BatchNormalization layers.
        steps: the number of inner steps (copies).
    """

    def __init__(self, learner: keras.Model, model: keras.Model, steps: int):
        param_index = {id(v): i for i, v in enumerate(model.trainable_variables)}
        state_index = {id(v): i for i, v in enumerate(model.non_trainable_variables)}
        layers = [
            layer
            for layer in _keras_compat.nested_layers(model)
            if isinstance(layer, keras.layers.BatchNormalization)
        ]
        if not layers:
            raise ValueError(
                "`per_step_bn=True` needs a model with BatchNormalization "
                f"layers; {model.name!r} has none."
            )
        self.steps = steps
        self.weights: dict[str, PerStepCopy] = {}
        self.statistics: dict[str, PerStepCopy] = {}

        def per_step_copy(variable, trainable):
            value = tf.convert_to_tensor(variable)
            return learner.add_weight(
                shape=(steps,) + tuple(variable.shape),
                initializer=lambda shape, dtype: tf.broadcast_to(tf.cast(value, dtype), shape),
                dtype=variable.dtype,
                trainable=trainable,
                name=variable.path.replace("/", "_") + "_per_step",
            )

        # Layer by layer, weights before statistics: the order in which the
        # learner's variables are created, hence saved.
        for layer in layers:
            for attr in ("gamma", "beta"):
                variable = getattr(layer, attr, None)
                if variable is not None and id(variable) in param_index:
                    self.weights[variable.path] = PerStepCopy(
                        param_index[id(variable)], per_step_copy(variable, True)
                    )
            for attr in ("moving_mean", "moving_variance"):
                variable = getattr(layer, attr, None)
                if variable is not None and id(variable) in state_index:
                    self.statistics[variable.path] = PerStepCopy(
                        state_index[id(variable)], per_step_copy(variable, False)
                    )

    def weight_indices(self) -> list[int]:
        """Positions of the copied BatchNorm weights in the model's trainable ones."""
        return [copy.index for copy in self.weights.values()]

    def state_variables(self, model_state_variables) -> PerStepBatchNormState:
        """The variables of the state carried through the loop over episodes."""
        return PerStepBatchNormState(
            list(model_state_variables),
            {path: copy.variable for path, copy in self.statistics.items()},
        )

    def _step(self, step: int) -> int:
        # Steps beyond training (eval_inner_steps) use the last step's copies.
        return min(step, self.steps - 1)

    def params_at(self, params, step: int) -> list:
        """`params` with the BatchNorm weights of inner step `step`."""
        k = self._step(step)
        params = list(params)
        for copy in self.weights.values():
            params[copy.index] = tf.cast(copy.variable[k], params[copy.index].dtype)
        return params

    def model_state_at(self, state: PerStepBatchNormState, step: int) -> list:
        """The model's non-trainable values with the statistics of step `step`."""
        k = self._step(step)
        model_state = list(state.model)
        for path, copy in self.statistics.items():
            model_state[copy.index] = state.statistics[path][k]
        return model_state

    def forward(self, forward, params, state, x, training: bool, step: int):
        """`forward(params, model_state, x, training)` at inner step `step`.

        Returns `(outputs, new_state, regularization_loss)`: the pass's
        statistics go to copy `step`; the model's own stay as they were.
        """
        params = self.params_at(params, step)
        if not isinstance(state, PerStepBatchNormState):
            return forward(params, state, x, training)
        k = self._step(step)
        pred, new_state, reg = forward(params, self.model_state_at(state, step), x, training)
        statistics = {}
        for path, copy in self.statistics.items():
            values = state.statistics[path]
            statistics[path] = tf.concat(
                [values[:k], tf.cast(new_state[copy.index], values.dtype)[None], values[k + 1 :]],
                axis=0,
            )
            new_state[copy.index] = state.model[copy.index]
        return pred, PerStepBatchNormState(new_state, statistics), reg
