"""Building the wrapped model and the learner's own weights, and serialisation.

A mixin of `MetaLearner` (which lists it before `keras.Model`): the wrapped
model is built from the episode spec learned at trace time (or saved with
the learner), the learner's own weights right after it, and the learner
saves as `{"model": ..., "bn_mode": ..., "parallel_episodes": ...}` plus
what each algorithm adds.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_meta._serialization import from_config_with_model


class BuildAndSerialize:
    """`build`, `build_meta_weights` and `get_config`/`from_config` of a learner."""

    def build(self, input_shape=None):
        if isinstance(input_shape, dict) and "support_x" in input_shape:
            feature_shape = tuple(input_shape["support_x"])[2:]
            self._build_model(feature_shape)
        self.built = True

    def _build_model(self, feature_shape, dtype="float32"):
        if self.model.built and self.model.weights:
            self._maybe_build_meta_weights()
            return
        # A symbolic call builds every kind of model (a subclassed model's
        # `build(shape)` may mark it built without creating its weights);
        # init_scope escapes any graph being traced, where Keras cannot
        # create variables.
        with tf.init_scope():
            try:
                self.model(keras.KerasTensor((None,) + tuple(feature_shape), dtype))
            except Exception as e:
                raise ValueError(
                    "Could not build the wrapped model for inputs of shape "
                    f"(None, {', '.join(map(str, feature_shape))}). Build it "
                    "yourself (call it once on a batch) before wrapping it. "
                    f"Error: {e}"
                ) from e
            self._maybe_build_meta_weights()

    def build_meta_weights(self):
        """Creates the learner's own weights (e.g. learned inner rates).

        Called once, as soon as the wrapped model has its weights (at
        construction when it is built already, else when the learner is
        built), so that the weights exist before the optimizer is built and
        before a `.keras` file's weights are loaded. Default: none.
        """

    def _maybe_build_meta_weights(self):
        # Subclasses call this at the end of __init__, once their
        # configuration (which build_meta_weights reads) is set.
        if getattr(self, "_meta_weights_built", False) or not (
            self.model.built and self.model.weights
        ):
            return
        self._meta_weights_built = True
        with tf.init_scope():
            self.build_meta_weights()

    def get_build_config(self):
        return {"episode_spec": self._episode_spec}

    def build_from_config(self, config):
        spec = config.get("episode_spec")
        if spec:
            self._episode_spec = spec
            self._build_model(spec["input_shape"], spec.get("input_dtype", "float32"))
        self.built = True

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "model": keras.saving.serialize_keras_object(self.model),
                "bn_mode": self.bn_mode,
                "parallel_episodes": self.parallel_episodes,
            }
        )
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        return from_config_with_model(cls, config, custom_objects)
