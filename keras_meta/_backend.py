"""Fail early, and say how to fix it, when Keras runs on another backend."""

import os


def _message(backend: str) -> str:
    return (
        "keras_meta needs the TensorFlow backend of Keras 3, but Keras is "
        f"configured with backend={backend!r}. Set the environment variable "
        "KERAS_BACKEND=tensorflow before importing keras (for example "
        '`export KERAS_BACKEND=tensorflow`), or set "backend": '
        '"tensorflow" in ~/.keras/keras.json.'
    )


def check_backend() -> None:
    # Checked before importing keras: importing it with another backend may
    # itself fail (the numpy backend needs jax) with a less helpful message.
    configured = os.environ.get("KERAS_BACKEND")
    if configured and configured != "tensorflow":
        raise ImportError(_message(configured))
    import keras

    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise ImportError(_message(backend))
