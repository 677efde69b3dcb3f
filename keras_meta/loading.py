"""Loading a saved learner with errors that name the file."""

from __future__ import annotations

import os
import zipfile

import keras


def load_learner(path: str | os.PathLike, custom_objects: dict | None = None,
                 compile: bool = True) -> keras.Model:
    """Loads a learner (or any Keras model) saved with `learner.save("x.keras")`.

    Like `keras.saving.load_model`, with the keras_meta classes registered, but
    a missing, truncated or corrupt file raises an error that names the file
    and says what is wrong with it (Keras reports a truncated archive as
    "File not found").

    Args:
        path: the `.keras` file.
        custom_objects: classes of your own used by the model (e.g. a
            subclassed wrapped model), as for `keras.saving.load_model`.
        compile: restore the compiled loss, metrics and optimizer.

    Example:

    >>> import keras, keras_meta as km, tempfile, os
    >>> net = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    >>> learner = km.MAML(net, inner_learning_rate=0.01)
    >>> learner.compile(optimizer="adam", loss="mse")
    >>> path = os.path.join(tempfile.mkdtemp(), "maml.keras")
    >>> learner.save(path)
    >>> type(km.load_learner(path)).__name__
    'MAML'
    >>> with open(path, "r+b") as f:
    ...     _ = f.truncate(100)
    >>> km.load_learner(path)
    Traceback (most recent call last):
    ...
    ValueError: '...maml.keras' is not a valid Keras archive ...
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No saved learner at {path!r}: the file does not exist.")
    if os.path.isdir(path):
        raise ValueError(
            f"{path!r} is a folder; expected a `.keras` file written by `learner.save`. "
            "(A SavedModel folder from `learner.export` loads with tf.saved_model.load.)"
        )
    problem = _archive_problem(path)
    if problem:
        raise ValueError(
            f"{path!r} is not a valid Keras archive ({problem}); it may be truncated or "
            "corrupt. Save the learner again with `learner.save(path)`."
        )
    import keras_meta  # noqa: F401 - registers the learner classes for deserialisation

    try:
        return keras.saving.load_model(path, custom_objects=custom_objects, compile=compile)
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise ValueError(
            f"{path!r} is not a valid Keras archive; it may be truncated or corrupt. "
            f"Error: {e}"
        ) from e


def _archive_problem(path: str) -> str | None:
    """Why `path` is not a readable `.keras` zip, or None."""
    if not zipfile.is_zipfile(path):
        return "not a zip file"
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if "config.json" not in names:
                return "no config.json in the archive"
            bad = archive.testzip()
            if bad is not None:
                return f"the entry {bad!r} is damaged"
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        return str(e)
    return None
