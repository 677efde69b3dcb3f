"""Few-shot evaluation: per-episode metrics with 95% confidence intervals.

The few-shot literature reports the mean query accuracy over a fixed set of
test episodes (usually 600) with the half-width of its 95% confidence
interval, `1.96 * std / sqrt(n)`. `keras.Model.evaluate` gives the mean but not
the spread, because its metrics accumulate over batches; `evaluate` here
computes the compiled loss and every compiled metric on each episode on its
own, then summarises.
"""

from __future__ import annotations

import logging
import math
import time
import weakref

import keras
import numpy as np
import tensorflow as tf

from keras_meta import _keras_compat
from keras_meta.adapted import resolve_batch_norm
from keras_meta.data.matching import episode_axes, episode_image_shape, match_images
from keras_meta.input_checks import model_input_shape
from keras_meta.validation import check_bool

#: The z-value of a two-sided 95% normal confidence interval.
Z_95 = 1.96

_LOGGER = logging.getLogger(__name__)
# (episode shape, input shape) pairs already logged: evaluating every epoch logs once.
_LOGGED_MATCHES: set = set()


def confidence_interval(values, z: float = Z_95) -> tuple[float, float]:
    """Mean and confidence-interval half-width of per-episode values.

    The half-width is `z * std / sqrt(n)` with the population standard
    deviation (numpy's default, `ddof=0`), as in the reference evaluation code
    of MAML and Prototypical Networks; at n = 600 the sample standard deviation
    (`ddof=1`) would be 0.08% larger.

    Args:
        values: per-episode values, `[n]` (or `[n, ...]`: summarised per
            component along the first axis).
        z: the z-value (1.96 for 95%).

    Returns:
        `(mean, half_width)` as Python floats (or lists for `[n, ...]`).

    Example:

    >>> confidence_interval([0.0, 1.0, 0.0, 1.0])
    (0.5, 0.49)
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 0 or len(values) == 0:
        raise ValueError(
            f"Expected at least one per-episode value; received {values.shape} values."
        )
    mean = values.mean(axis=0)
    half = z * values.std(axis=0) / math.sqrt(len(values))
    if mean.ndim == 0:
        return float(mean), float(half)
    return mean.tolist(), half.tolist()


def _as_dataset(episodes) -> tf.data.Dataset:
    if isinstance(episodes, tf.data.Dataset):
        return episodes
    if isinstance(episodes, tuple) and len(episodes) == 2:
        # In-memory batches of episodes: (x dict of [B, ...] arrays, query_y).
        x, y = episodes
        return tf.data.Dataset.from_tensor_slices(
            ({k: np.asarray(v) for k, v in x.items()}, np.asarray(y))
        )
    raise TypeError(
        "Expected `episodes` to be a tf.data.Dataset of episodes (batched or "
        "not) or a tuple (x, query_y) of arrays with a leading episode axis; "
        f"received {type(episodes).__name__}."
    )


class _Overrides:
    """Temporarily sets learner attributes that are read when tracing."""

    def __init__(self, learner, **values):
        self.learner = learner
        self.values = {k: v for k, v in values.items() if v is not None}
        self.saved = {}

    def __enter__(self):
        for name, value in self.values.items():
            if not hasattr(self.learner, name):
                raise ValueError(
                    f"{type(self.learner).__name__} has no `{name}`, so it cannot "
                    f"be overridden for this evaluation."
                )
            self.saved[name] = getattr(self.learner, name)
            setattr(self.learner, name, value)
        return self

    def __exit__(self, *exc):
        for name, value in self.saved.items():
            setattr(self.learner, name, value)
        return False


def _compiled_metrics(learner, y, preds) -> list:
    metrics = _keras_compat.compiled_metrics(learner)
    if metrics is None:
        return []
    if not metrics.built:
        metrics.build(y, preds)
    return list(metrics.metrics)


def evaluate(
    learner,
    episodes,
    num_episodes: int = 600,
    batch_size: int = 16,
    time_adaptation: bool = False,
    return_per_episode: bool = False,
    inner_steps: int | None = None,
    bn_mode: str | None = None,
    with_adapted_model: bool = False,
    adapted_batch_norm: str | None = None,
    verbose: int = 0,
    match_inputs: bool = True,
) -> dict:
    """Evaluates a learner episode by episode: mean and 95% CI of each metric.

    Each episode is adapted on its support set and scored on its query set
    with the compiled loss and each compiled metric, on its own; the results
    are the means over `num_episodes` episodes with the half-width of their
    95% confidence intervals, `1.96 * std / sqrt(n)` (population std,
    `ddof=0`, as in the reference code of MAML and ProtoNets).

    Args:
        learner: a compiled `keras_meta` learner.
        episodes: a `tf.data.Dataset` of episodes, single (as
            `keras_meta.data` makes them) or batched; the first
            `num_episodes` episodes are used. Use a finite, seeded set (e.g.
            `num_episodes=600, seed=...` in the sampler) so that every
            evaluation sees the same episodes.
        num_episodes: how many episodes to evaluate; an error if the dataset
            yields fewer.
        batch_size: episodes per call of the learner (they are adapted one
            after the other inside the call, so this trades Python overhead
            for memory only, never results).
        time_adaptation: also report `"adaptation_seconds"`, the mean
            wall-clock time per episode of adaptation and query prediction
            (after a warm-up call that traces the graph; data loading and
            scoring excluded).
        return_per_episode: also return `"per_episode"`, a dict of the
            per-episode values (lists of length `num_episodes`).
        inner_steps: inner steps for this evaluation (default: the learner's
            `eval_inner_steps`); only for learners that have them.
        bn_mode: `"transductive"` or `"running"` for this evaluation
            (default: the learner's `bn_mode`).
        with_adapted_model: also score, on the same episodes, the model that
            `learner.adapt(support_x, support_y)` returns, used as a user
            would (`adapted.predict(query_x)`): every metric `name` gets `"adapted_" + name` and its
            `_ci95`, and `"adapted_batch_norm"` says how that model
            normalised. Slower: each episode is adapted eagerly.
        adapted_batch_norm: the `batch_norm` of `adapt` for those models
            (default: the one that reproduces the evaluation, see
            `keras_meta.adapted`).
        verbose: 1 shows a progress bar.
        match_inputs: when the episodes' images have another shape than the
            learner's model takes (another domain: 8x8 digits for a 28x28
            Omniglot learner), map them to it with
            `keras_meta.data.match_images` (bilinear antialiased resize, gray
            <-> RGB), logged once; with `False` a mismatch is an error.
            Images must be on the [0, 1] scale either way.

    Returns:
        A dict with, for the loss and each compiled metric `name`, `name` (the
        mean) and `name + "_ci95"`; `"num_episodes"`; `"bn_mode"`;
        `"inner_steps"` (the evaluation inner steps, for learners that have
        them); and `"adaptation_seconds"` / `"per_episode"` if asked.

    Example:

    >>> import keras, keras_meta as km
    >>> net = keras.Sequential([keras.Input((1,)), keras.layers.Dense(40, "relu"),
    ...                         keras.layers.Dense(1)])
    >>> learner = km.MAML(net, inner_learning_rate=0.01, inner_steps=1)
    >>> learner.compile(optimizer="adam", loss="mse", metrics=["mae"])
    >>> test = km.data.sinusoid(shots=10, queries=10, seed=1, num_episodes=50)
    >>> results = km.evaluate(learner, test, num_episodes=50)
    >>> sorted(results)[:4]
    ['bn_mode', 'inner_steps', 'loss', 'loss_ci95']
    """
    if isinstance(num_episodes, bool) or not isinstance(num_episodes, int):
        raise TypeError(f"Expected `num_episodes` to be an int; received {num_episodes!r}.")
    if num_episodes < 1:
        raise ValueError(f"Expected `num_episodes` >= 1; received {num_episodes}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or (batch_size < 1):
        raise ValueError(f"Expected `batch_size` >= 1; received {batch_size!r}.")
    check_bool("with_adapted_model", with_adapted_model)
    check_bool("match_inputs", match_inputs)
    learner._require_loss()

    dataset = _matched(learner, _as_dataset(episodes), match_inputs)
    if episode_axes(dataset.element_spec) == 2:
        dataset = dataset.unbatch()
    cardinality = int(dataset.cardinality())
    if 0 <= cardinality < num_episodes:
        raise ValueError(
            f"The evaluation dataset has {cardinality} episodes, fewer than "
            f"num_episodes={num_episodes}. Make a larger set (e.g. "
            f"num_episodes={num_episodes} in the sampler) or lower num_episodes."
        )
    dataset = dataset.take(num_episodes).batch(batch_size).prefetch(2)

    with _Overrides(learner, eval_inner_steps=inner_steps, bn_mode=bn_mode):
        adapted = None
        if with_adapted_model:
            adapted = resolve_batch_norm(learner, adapted_batch_norm)
        results = _evaluate(learner, dataset, num_episodes, time_adaptation, verbose, adapted)
        steps = getattr(learner, "eval_inner_steps", None)
        used_bn_mode = learner.bn_mode

    per_episode = results.pop("per_episode")
    summary = {}
    for name, values in per_episode.items():
        mean, half = confidence_interval(values)
        summary[name] = mean
        summary[name + "_ci95"] = half
    summary["num_episodes"] = num_episodes
    summary["bn_mode"] = used_bn_mode
    if adapted is not None:
        summary["adapted_batch_norm"] = adapted
    if steps is not None:
        summary["inner_steps"] = int(steps)
    summary.update(results)
    if return_per_episode:
        summary["per_episode"] = {k: np.asarray(v).tolist() for k, v in per_episode.items()}
    return summary


def _matched(learner, dataset: tf.data.Dataset, match_inputs: bool) -> tf.data.Dataset:
    """`dataset` with its images matched to the learner's input shape if they differ."""
    expected = model_input_shape(getattr(learner, "model", None))
    received = episode_image_shape(dataset.element_spec)
    if expected is None or (
        len(expected) == len(received)
        and all(a is None or b is None or a == b for a, b in zip(expected, received))
    ):
        return dataset
    if not match_inputs:
        raise ValueError(
            f"The episodes' examples have the shape {received} but the learner's model "
            f"takes inputs of shape {expected}, and match_inputs=False. Pass "
            "match_inputs=True to resize them (keras_meta.data.match_images), or "
            "evaluate on episodes of the model's shape."
        )
    matched = match_images(dataset, expected)
    if (received, expected) not in _LOGGED_MATCHES:
        _LOGGED_MATCHES.add((received, expected))
        _LOGGER.warning(
            "keras_meta.evaluate: the episodes' images %s are resized to the learner's "
            "input shape %s (keras_meta.data.match_images); pass match_inputs=False to "
            "make this an error.",
            received,
            expected,
        )
    return matched


def _graph_functions(learner, x_spec):
    """The traced predict function of a learner, and a slot for its scorer.

    Cached per learner and per the settings read while tracing (the eval
    inner steps, the BN mode and the episode spec), so that evaluating every
    epoch traces once, not every time.
    """
    key = (
        getattr(learner, "eval_inner_steps", None),
        learner.bn_mode,
        str(x_spec),
    )
    cache = _CACHE.setdefault(learner, {})
    if key not in cache:

        @tf.function(input_signature=[x_spec], reduce_retracing=True)
        def predict(x):
            return learner(x, training=False)

        cache[key] = {"predict": predict, "score": None}
    return cache[key]


_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _adapted_predictions(learner, x, batch_norm, dtype):
    """Query predictions of `learner.adapt(...)`'s model, episode by episode."""
    preds = []
    for i in range(int(tf.shape(x["support_x"])[0])):
        model = learner.adapt(x["support_x"][i], x["support_y"][i], batch_norm=batch_norm)
        query = x["query_x"][i]
        preds.append(model.predict(query, verbose=0))
    return tf.cast(np.stack(preds), dtype)


def _evaluate(learner, dataset, num_episodes, time_adaptation, verbose, adapted=None):
    x_spec, _ = dataset.element_spec
    functions = _graph_functions(learner, x_spec)
    predict = functions["predict"]
    metrics = None
    score = None
    per_episode: dict[str, list] = {}
    seconds = 0.0
    seen = 0
    progbar = keras.utils.Progbar(num_episodes) if verbose else None
    for x, y in dataset:
        if time_adaptation and seen == 0:
            predict(x)  # Warm-up: tracing is not adaptation time.
        start = time.perf_counter()
        preds = predict(x)
        if time_adaptation:
            preds = tf.identity(preds).numpy()
            seconds += time.perf_counter() - start
        if metrics is None:
            metrics = _compiled_metrics(learner, y, preds)
            if functions["score"] is None or functions["metrics"] != metrics:
                functions["score"] = _make_scorer(learner, metrics)
                functions["metrics"] = metrics
            score = functions["score"]
            names = ["loss"] + [m.name for m in metrics]
            for name in names + (["adapted_" + n for n in names] if adapted else []):
                per_episode[name] = []
        values = score(y, preds)
        if adapted:
            values = list(values) + list(
                score(y, _adapted_predictions(learner, x, adapted, preds.dtype))
            )
        for name, value in zip(per_episode, values):
            per_episode[name].append(value.numpy())
        seen += int(tf.shape(y)[0])
        if progbar is not None:
            progbar.update(seen)
    if seen < num_episodes:
        raise ValueError(
            f"The evaluation dataset yielded only {seen} episodes, fewer than "
            f"num_episodes={num_episodes}. Make a larger set or lower num_episodes."
        )
    out = {"per_episode": {k: np.concatenate(v) for k, v in per_episode.items()}}
    if time_adaptation:
        out["adaptation_seconds"] = seconds / seen
    return out


def _make_scorer(learner, metrics):
    """A graph function: `(query_y [B, ...], preds [B, ...])` -> per-episode values."""
    initial = [m.stateless_reset_state() for m in metrics]
    dtype = learner._pred_dtype() if hasattr(learner, "_pred_dtype") else "float32"

    def one_episode(args):
        y, pred = args
        values = [tf.cast(learner.outer_loss(y, pred), dtype)]
        for metric, state in zip(metrics, initial):
            # A stateless update from the initial state: the metric of this
            # episode alone, and the learner's own metric variables untouched.
            state = metric.stateless_update_state(state, y, pred)
            values.append(tf.cast(metric.stateless_result(state), dtype))
        return values

    @tf.function(reduce_retracing=True)
    def score(y, preds):
        signature = [tf.TensorSpec(None, dtype)] * (1 + len(metrics))
        return tf.map_fn(one_episode, (y, preds), fn_output_signature=signature)

    return score
