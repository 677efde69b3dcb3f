"""Serialisation shared by the Keras objects that wrap a model (learners and
adapted models): the wrapped model travels in the config under `"model"`."""

from __future__ import annotations

import keras


def from_config_with_model(cls, config: dict, custom_objects=None):
    """`cls(model, **rest)` from a config whose `"model"` is a serialised model."""
    config = dict(config)
    model = keras.saving.deserialize_keras_object(
        config.pop("model"), custom_objects=custom_objects
    )
    return cls(model, **config)
