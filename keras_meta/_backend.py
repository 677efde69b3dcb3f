"""Facts about the backend a process runs: fail early, and say how to fix it,
when Keras runs on another backend; whether TensorFlow uses oneDNN kernels."""

import os

# TensorFlow's switch for its oneDNN CPU kernels, read once when TensorFlow
# is imported. TensorFlow turns them on by default only on CPUs with
# AVX512-VNNI, AVX512-BF16 or AMX.
ONEDNN_ENV = "TF_ENABLE_ONEDNN_OPTS"


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


def onednn_enabled() -> bool:
    """Whether this process's TensorFlow runs its oneDNN CPU kernels.

    Example:

    >>> isinstance(onednn_enabled(), bool)
    True
    """
    import tensorflow  # noqa: F401  (the flag below is read when it is imported)
    from tensorflow.python.util import _pywrap_util_port

    return bool(_pywrap_util_port.IsMklEnabled())
