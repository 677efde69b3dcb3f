"""Fail early, and say how to fix it, when Keras runs on another backend."""

import keras


def check_backend() -> None:
    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise ImportError(
            "keras_meta needs the TensorFlow backend of Keras 3, but Keras is "
            f"configured with backend={backend!r}. Set the environment variable "
            "KERAS_BACKEND=tensorflow before importing keras (for example "
            "`export KERAS_BACKEND=tensorflow`), or set \"backend\": "
            "\"tensorflow\" in ~/.keras/keras.json."
        )
