"""Plots of meta-training runs: learning curves and regression adaptation.

matplotlib is imported lazily, with the non-interactive Agg backend, so that
plotting works on servers without a display and importing keras_meta stays
light.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path) -> None:
    # To a temporary file renamed into place: a crash leaves the old plot or the new one.
    from keras_meta.experiments.run_dir import atomic

    with atomic(os.fspath(path)) as tmp:
        fig.savefig(tmp, dpi=100)


def read_history(path) -> dict[str, list[float]]:
    """Reads a `keras.callbacks.CSVLogger` file into `{column: values}`.

    When a resumed run logged an epoch twice, the last row of that epoch
    wins, so every epoch appears once and in order.

    Example:

    >>> history = read_history("runs/omniglot/history.csv")  # doctest: +SKIP
    >>> history["val_accuracy"][-1]                           # doctest: +SKIP
    0.97
    """
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    by_epoch = {}
    for row in rows:
        by_epoch[int(float(row.get("epoch", len(by_epoch))))] = row
    history: dict[str, list[float]] = {}
    for epoch in sorted(by_epoch):
        for key, value in by_epoch[epoch].items():
            try:
                number = float(value)
            except (TypeError, ValueError):
                number = float("nan")
            history.setdefault(key, []).append(number)
    return history


def plot_history(
    history,
    path,
    steps_per_epoch: int | None = None,
    title: str | None = None,
) -> str:
    """Plots learning curves: one panel per metric, training and validation.

    Validation values with a `<name>_ci95` column (from
    `keras_meta.callbacks.MetaEvaluation`) are drawn with their 95%
    confidence band.

    Args:
        history: a `History.history` dict, a `History` object, or the path of
            a `CSVLogger` file.
        path: the PNG file to write.
        steps_per_epoch: to label the x axis in meta-iterations rather than
            epochs.
        title: the figure title.

    Returns:
        `path`.

    Example:

    >>> plot_history({"loss": [1.0, 0.5], "val_loss": [1.1, 0.7]},
    ...              "curves.png")
    'curves.png'
    """
    if isinstance(history, (str, os.PathLike)):
        history = read_history(history)
    elif not isinstance(history, Mapping):
        history = history.history
    history = {k: np.asarray(v, dtype=float) for k, v in history.items()}
    names = sorted(
        {k[4:] if k.startswith("val_") else k for k in history} - {"epoch", "learning_rate"}
    )
    names = [n for n in names if not n.endswith("_ci95") and n != "adaptation_seconds"]
    # The loss first, then the metrics.
    names.sort(key=lambda n: (n != "loss", n))
    plt = _pyplot()
    fig, axes = plt.subplots(
        1, max(1, len(names)), figsize=(5 * max(1, len(names)), 3.6), squeeze=False
    )
    for ax, name in zip(axes[0], names):
        for key, label in ((name, "meta-train"), ("val_" + name, "validation")):
            if key not in history:
                continue
            values = history[key]
            epochs = np.arange(1, len(values) + 1)
            x = epochs * steps_per_epoch if steps_per_epoch else epochs
            (line,) = ax.plot(x, values, marker="o", markersize=3, label=label)
            band = history.get(key + "_ci95")
            if band is not None and len(band) == len(values):
                ax.fill_between(x, values - band, values + band, alpha=0.2, color=line.get_color())
        ax.set_xlabel("meta-iteration" if steps_per_epoch else "epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return os.fspath(path)


def plot_regression_adaptation(
    learner,
    episodes,
    path,
    num_tasks: int = 3,
    steps: int | None = None,
    x_range: tuple[float, float] | None = None,
    target_fn=None,
) -> str:
    """Plots 1-D regression tasks before and after adaptation.

    For each of the first `num_tasks` episodes: the support points, the query
    points, the wrapped model's prediction with the meta-learned weights
    (before adaptation) and the prediction of `learner.adapt(support)` (after
    adaptation), on a dense grid.

    Args:
        learner: a learner of 1-D regression (inputs `[.., 1]`, targets
            `[.., 1]`).
        episodes: a dataset of single episodes (e.g. `km.data.sinusoid`).
        path: the PNG file to write.
        num_tasks: how many tasks (panels).
        steps: inner steps of the adaptation (default: the learner's).
        x_range: the plotted input range (default: that of the points).
        target_fn: optional `target_fn(task_index, x) -> y` drawing the true
            function.

    Returns:
        `path`.

    Example:

    >>> import keras, keras_meta as km
    >>> net = keras.Sequential([keras.Input((1,)), keras.layers.Dense(40, "relu"),
    ...                         keras.layers.Dense(1)])
    >>> learner = km.MAML(net, inner_learning_rate=0.01, inner_steps=1)
    >>> learner.compile(optimizer="adam", loss="mse")
    >>> tasks = km.data.sinusoid(shots=10, queries=50, seed=0, num_episodes=2)
    >>> plot_regression_adaptation(learner, tasks, "adapt.png", num_tasks=2)
    'adapt.png'
    """
    plt = _pyplot()
    tasks = list(episodes.take(num_tasks).as_numpy_iterator())
    if not tasks:
        raise ValueError("The dataset has no episodes to plot.")
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 3.6), squeeze=False)
    for i, (ax, (x, query_y)) in enumerate(zip(axes[0], tasks)):
        sx, sy, qx = x["support_x"], x["support_y"], x["query_x"]
        points = np.concatenate([sx[:, 0], qx[:, 0]])
        low, high = x_range or (float(points.min()), float(points.max()))
        grid = np.linspace(low, high, 200, dtype=sx.dtype)[:, None]
        before = np.asarray(learner.model(grid, training=False))
        adapted = learner.adapt(sx, sy, steps=steps)
        after = np.asarray(adapted(grid, training=False))
        if target_fn is not None:
            ax.plot(grid[:, 0], target_fn(i, grid[:, 0]), "k-", lw=1, label="true")
        ax.plot(qx[:, 0], query_y[:, 0], ".", color="0.6", label="query")
        ax.plot(grid[:, 0], before[:, 0], "--", label="before adaptation")
        ax.plot(grid[:, 0], after[:, 0], "-", label="after adaptation")
        ax.plot(sx[:, 0], sy[:, 0], "^", color="k", label="support")
        ax.set_title(f"task {i + 1}")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return os.fspath(path)


def plot_classification_episode(
    support_x,
    support_y,
    query_x,
    query_y,
    predicted,
    path,
    class_names=None,
    title: str | None = None,
) -> str:
    """Plots one classification episode: support images, queries, predicted vs true.

    One row per class: its support images, then its query images, each query
    titled with its predicted class, green when right and red when wrong.

    Args:
        support_x, query_x: images `[n, h, w, channels]` in `[0, 1]`.
        support_y, query_y: their integer labels `0..N-1`.
        predicted: the predicted label of each query.
        path: the PNG file to write.
        class_names: a name per label (default: the labels).
        title: the figure's title.

    Returns:
        `path`.

    Example:

    >>> import numpy as np
    >>> x = np.random.default_rng(0).random((4, 8, 8, 1))
    >>> plot_classification_episode(x[:2], [0, 1], x[2:], [0, 1], [0, 0], "episode.png")
    'episode.png'
    """
    plt = _pyplot()
    support_y, query_y, predicted = (
        np.asarray(a).astype(int).reshape(-1) for a in (support_y, query_y, predicted)
    )
    if not (len(query_y) == len(predicted) == len(query_x)) or len(support_y) != len(support_x):
        raise ValueError(
            "Expected one label per image and one prediction per query; received "
            f"{len(support_x)} support images, {len(support_y)} support labels, "
            f"{len(query_x)} queries, {len(query_y)} query labels, {len(predicted)} predictions."
        )
    classes = sorted(set(support_y.tolist()))
    names = [str(c) for c in classes] if class_names is None else list(class_names)
    per_row = [(support_x[support_y == c], np.flatnonzero(query_y == c)) for c in classes]
    columns = max(len(s) + len(q) for s, q in per_row)
    fig, axes = plt.subplots(
        len(classes), columns + 1, figsize=(1.3 * (columns + 1), 1.4 * len(classes)),
        squeeze=False,
    )
    for ax in axes.flat:
        ax.axis("off")

    def show(ax, image):
        image = np.asarray(image, dtype="float32")
        gray = image.shape[-1] == 1
        ax.imshow(image[..., 0] if gray else image, cmap="gray_r" if gray else None,
                  vmin=0.0, vmax=1.0)

    for row, (c, (support, queries)) in enumerate(zip(classes, per_row)):
        axes[row][0].text(0.5, 0.5, f"true:\n{names[c]}", ha="center", va="center", fontsize=7,
                          wrap=True)
        for j, image in enumerate(support):
            show(axes[row][1 + j], image)
            axes[row][1 + j].set_title("support", fontsize=7)
        for j, q in enumerate(queries):
            ax = axes[row][1 + len(support) + j]
            show(ax, query_x[q])
            right = predicted[q] == query_y[q]
            ax.set_title(f"-> {names[predicted[q]]}", fontsize=7,
                         color="green" if right else "red")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return os.fspath(path)
