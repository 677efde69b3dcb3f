"""Records how a dataset of episodes was made, so a run's protocol is inspectable."""

import copy


def attach_config(dataset, config):
    """Sets `dataset.episode_config` to a copy of `config` and returns `dataset`.

    Transformations such as `.batch()` return new datasets without the attribute; read
    it from the dataset the sampler returned (or call the sampler's `get_config()`).
    """
    dataset.episode_config = copy.deepcopy(config)
    return dataset


def describe_callable(fn):
    """A JSON-friendly description of a user callable (with a Keras layer's config)."""
    if fn is None:
        return None
    description = {
        "name": getattr(fn, "name", None) or getattr(fn, "__name__", None) or type(fn).__name__
    }
    description["class_name"] = type(fn).__name__
    get_config = getattr(fn, "get_config", None)
    if callable(get_config):
        try:
            description["config"] = get_config()
        except Exception:  # noqa: BLE001 - a description must never break sampling
            pass
    return description
