"""Seeded splits of classes (not examples) into train / validation / test."""

import numbers
from collections.abc import Mapping, Sequence

import numpy as np

from keras_meta.data import _seeds
from keras_meta.data._arrays import check_labels

_DEFAULT_NAMES = {
    1: ("train",),
    2: ("train", "test"),
    3: ("train", "validation", "test"),
}


class ClassSplit:
    """Disjoint sets of class ids, by split name; selects the examples of a split.

    Returned by `split_classes()`. `split[name]` is the sorted int64 array of class ids
    of that split; `select(name, x, y)` returns the examples of those classes (original
    class ids kept, since `episodes()` remaps labels anyway).

    Example:

    >>> import numpy as np, keras_meta as km
    >>> y = np.repeat(np.arange(10), 3); x = np.arange(30.0)
    >>> split = km.data.split_classes(y, {"train": 7, "test": 3}, seed=0)
    >>> x_train, y_train = split.select("train", x, y)
    >>> len(split["train"]), len(np.unique(y_train))
    (7, 7)
    """

    def __init__(self, classes: Mapping[str, np.ndarray], seed: int | None = None):
        self._classes = {name: np.sort(np.asarray(c, np.int64)) for name, c in classes.items()}
        self.seed = seed

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._classes)

    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self._classes[name]
        except KeyError:
            raise KeyError(
                f"Unknown split {name!r}; this ClassSplit has the splits {list(self._classes)}."
            ) from None

    def __iter__(self):
        return iter(self._classes)

    def __len__(self) -> int:
        return len(self._classes)

    def items(self):
        return self._classes.items()

    def mask(self, name: str, labels) -> np.ndarray:
        """Boolean `[n]` mask of the examples whose label is in split `name`."""
        return np.isin(check_labels(labels), self[name])

    def select(self, name: str, x, y) -> tuple[np.ndarray, np.ndarray]:
        """`(x, y)` restricted to the examples of the classes of split `name`."""
        y = np.asarray(y)
        if len(x) != len(y):
            raise ValueError(
                f"`x` and `y` must have the same length; received {len(x)} examples in "
                "x and "
                f"{len(y)} labels in y."
            )
        keep = self.mask(name, y)
        return np.asarray(x)[keep], y[keep]

    def get_config(self) -> dict[str, object]:
        return {
            "seed": self.seed,
            "classes": {name: c.tolist() for name, c in self._classes.items()},
        }

    def __repr__(self):
        sizes = ", ".join(f"{name}={len(c)}" for name, c in self._classes.items())
        return f"ClassSplit({sizes}, seed={self.seed})"


def _sizes_from_fractions(fractions, num_classes):
    total = sum(fractions)
    if any(f < 0 for f in fractions) or total > 1 + 1e-9:
        raise ValueError(
            "Fractions must be >= 0 and sum to at most 1; received "
            f"{list(fractions)} (sum {total:g})."
        )
    exact = [f * num_classes for f in fractions]
    sizes = [int(np.floor(e)) for e in exact]
    # Largest remainders get the leftover classes, so fractions summing to 1 use every class.
    target = int(round(total * num_classes))
    shortfall = [s - e for s, e in zip(sizes, exact, strict=True)]
    for i in np.argsort(shortfall, kind="stable"):
        if sum(sizes) >= target:
            break
        sizes[i] += 1
    return sizes


def split_classes(
    labels_or_num_classes: int | Sequence[int] | np.ndarray,
    sizes: Sequence[int | float] | Mapping[str, int | float],
    seed: int | None = 0,
) -> ClassSplit:
    """Splits classes into disjoint named sets, by counts or by fractions, with a seed.

    Split by class, before any augmentation such as `rotate_classes()`, so that no
    (rotated) copy of a held-out class ever reaches training.

    Args:
        labels_or_num_classes: the `[n]` integer labels of the data (the split draws
            from the distinct labels present), or a number of classes `C` (classes
            `0..C-1`).
        sizes: per-split sizes, all integers (class counts) or all floats (fractions of
            the classes). A dict names the splits, e.g. `{"train": 1100, "validation":
            100,
            "test": 423}`; a sequence of 2 or 3 sizes is named `("train", "test")` or
            `("train", "validation", "test")`. Counts may sum to fewer than the classes
            (the rest are unused); fractions may sum to at most 1 and are rounded so
            that fractions summing to 1 use every class.
        seed: integer seed of the class permutation (default 0, so a split is
            reproducible unless asked otherwise); `None` for a random split.

    Returns:
        A `ClassSplit`.

    Example:

    >>> import keras_meta as km
    >>> split = km.data.split_classes(1623, [1100, 100, 423], seed=0)
    >>> split.names, [len(split[n]) for n in split]
    (('train', 'validation', 'test'), [1100, 100, 423])
    >>> split = km.data.split_classes(100, (0.7, 0.3), seed=0)
    >>> len(split["train"]), len(split["test"])
    (70, 30)
    """
    if isinstance(labels_or_num_classes, numbers.Integral) and not isinstance(
        labels_or_num_classes, bool
    ):
        if labels_or_num_classes < 1:
            raise ValueError(
                f"The number of classes must be >= 1; received {labels_or_num_classes}."
            )
        classes = np.arange(int(labels_or_num_classes), dtype=np.int64)
    else:
        classes = np.unique(check_labels(labels_or_num_classes))
    num_classes = len(classes)

    if isinstance(sizes, Mapping):
        names, values = tuple(sizes.keys()), list(sizes.values())
    else:
        values = list(sizes)
        if len(values) not in _DEFAULT_NAMES:
            raise ValueError(
                "Give 1 to 3 sizes as a sequence (named train/validation/test), or a "
                "dict "
                f"{{name: size}} for other splits; received {len(values)} sizes: "
                f"{values}."
            )
        names = _DEFAULT_NAMES[len(values)]
    if not values:
        raise ValueError("`sizes` is empty; expected at least one split size.")
    if all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in values):
        counts = [int(v) for v in values]
        if any(c < 0 for c in counts):
            raise ValueError(f"Class counts must be >= 0; received {counts}.")
        if sum(counts) > num_classes:
            raise ValueError(
                f"The split sizes {counts} sum to {sum(counts)} classes, but there are "
                "only "
                f"{num_classes} classes."
            )
    elif all(isinstance(v, numbers.Real) and not isinstance(v, numbers.Integral) for v in values):
        counts = _sizes_from_fractions([float(v) for v in values], num_classes)
    else:
        raise TypeError(
            "`sizes` must be all integers (class counts) or all floats (fractions); "
            "received "
            f"{values}."
        )

    seed = _seeds.check_seed(seed)
    rng = np.random.default_rng(seed)
    permuted = classes[rng.permutation(num_classes)]
    bounds = np.cumsum([0] + counts)
    return ClassSplit(
        {name: permuted[bounds[i] : bounds[i + 1]] for i, name in enumerate(names)},
        seed=seed,
    )
