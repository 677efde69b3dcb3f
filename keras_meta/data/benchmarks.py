"""Few-shot benchmarks on TFDS datasets as one-liners: CIFAR-FS, FC100 and CUB.

Each benchmark is a named split of the classes of a TFDS dataset. Its classes are listed
in package data files, `keras_meta/data/class_lists/<benchmark>_<split>.txt`: one class
per line, `#` lines are comments (the first names the source of the list). Labels stay
the dataset's label ids; `episodes()` remaps them per episode.
"""

import dataclasses
import importlib.resources
import os
import pathlib
import re
from collections.abc import Callable

import numpy as np

from keras_meta.data.tfds import CIFAR100_FINE_LABELS, _read_tfds
from keras_meta.validation import check_bool, check_choice

SPLITS = ("train", "validation", "test")


def _cifar100_id(name: str) -> int | None:
    return CIFAR100_FINE_LABELS.index(name) if name in CIFAR100_FINE_LABELS else None


def _cub_id(name: str) -> int | None:
    # CUB classes are named by their official folder, "NNN.Name"; TFDS labels them NNN - 1.
    match = re.fullmatch(r"(\d{3})\.\w+", name)
    if match is None or not 1 <= int(match[1]) <= 200:
        return None
    return int(match[1]) - 1


@dataclasses.dataclass(frozen=True)
class _Benchmark:
    tfds_name: str
    tfds_split: str
    class_id: Callable[[str], int | None]  # class name -> TFDS label id, None if unknown
    naming: str  # what a valid class name is, for the error message


_CIFAR100 = ("cifar100", "train+test", _cifar100_id, "a CIFAR-100 fine label name")
_BENCHMARKS = {
    "cifar_fs": _Benchmark(*_CIFAR100),
    "fc100": _Benchmark(*_CIFAR100),
    "cub": _Benchmark(
        "caltech_birds2011",
        "train+test",
        _cub_id,
        "a CUB-200-2011 folder name NNN.Name with NNN from 001 to 200",
    ),
}


def _class_list_file(benchmark: str, split: str, directory=None):
    """The class-list file of a split: the package's own, or one in `directory`."""
    filename = f"{benchmark}_{split}.txt"
    if directory is not None:
        return pathlib.Path(directory) / filename
    return importlib.resources.files("keras_meta.data").joinpath("class_lists", filename)


def _read_class_list(file) -> tuple[str, ...]:
    """The class names of a class-list file (a path or an importlib resource)."""
    if not file.is_file():
        raise FileNotFoundError(
            f"The class-list file {file} does not exist; keras_meta ships it as package "
            "data (keras_meta/data/class_lists/*.txt): reinstall keras_meta."
        )
    names = []
    for line in file.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line in names:
            raise ValueError(f"The class-list file {file} lists the class {line!r} twice.")
        names.append(line)
    if not names:
        raise ValueError(f"The class-list file {file} lists no classes.")
    return tuple(names)


def _split_classes(benchmark: str, split: str, directory=None):
    """`(names, label_ids, file)` of one split, each name checked against the dataset."""
    check_choice("split", split, SPLITS)
    spec = _BENCHMARKS[benchmark]
    file = _class_list_file(benchmark, split, directory)
    names = _read_class_list(file)
    ids = []
    for name in names:
        label = spec.class_id(name)
        if label is None:
            raise ValueError(
                f"The class-list file {file} names the class {name!r}, which TFDS "
                f"{spec.tfds_name!r} does not have: a class must be {spec.naming}."
            )
        ids.append(label)
    return names, ids, file


def _load(benchmark, split, *, data_dir, download, image_size, dtype, box_key=None,
          directory=None) -> tuple[np.ndarray, np.ndarray]:
    """The images and labels of the classes of one split of a benchmark."""
    names, ids, file = _split_classes(benchmark, split, directory)
    spec = _BENCHMARKS[benchmark]
    images, labels, label_names, _ = _read_tfds(
        spec.tfds_name,
        spec.tfds_split,
        image_size=image_size,
        classes=ids,
        data_dir=data_dir,
        download=download,
        dtype=dtype,
        box_key=box_key,
    )
    # A prepared dataset knows its label names (mocked or name-less ones are just the
    # ids as text): they must be those the class list was mapped with.
    if label_names and label_names != [str(i) for i in range(len(label_names))]:
        for name, label in zip(names, ids):
            if label_names[label] != name:
                raise ValueError(
                    f"The class-list file {file} names the class {name!r} (label id "
                    f"{label}), but TFDS {spec.tfds_name!r} calls label {label} "
                    f"{label_names[label]!r}."
                )
    return images, labels


def benchmark_classes(benchmark: str, split: str) -> tuple[str, ...]:
    """The class names of one split of a benchmark, as its class-list file lists them.

    Args:
        benchmark: `"cifar_fs"`, `"fc100"` or `"cub"`.
        split: `"train"`, `"validation"` or `"test"`.

    Example:

    >>> import keras_meta as km
    >>> len(km.data.benchmark_classes("fc100", "train"))
    60
    >>> km.data.benchmark_classes("cub", "test")[:2]
    ('004.Groove_billed_Ani', '008.Rhinoceros_Auklet')
    """
    check_choice("benchmark", benchmark, tuple(_BENCHMARKS))
    return _split_classes(benchmark, split)[0]


# CIFAR-FS (Bertinetto et al., 2019): 64/16/20 CIFAR-100 fine classes by split.
CIFAR_FS_CLASSES: dict[str, tuple[str, ...]] = {
    split: benchmark_classes("cifar_fs", split) for split in SPLITS
}


def cifar_fs(
    split: str = "train",
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    image_size: int | tuple[int, int] | None = None,
    dtype: str = "float32",
) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-FS: one of its 64/16/20-class splits of CIFAR-100, 600 images per class.

    Reads TFDS `cifar100` (`train+test`) and keeps the classes of
    `CIFAR_FS_CLASSES[split]`, the split of Bertinetto et al. (2019) as distributed with
    torchmeta (class list `class_lists/cifar_fs_<split>.txt`).

    Args:
        split: `"train"` (64 classes), `"validation"` (16) or `"test"` (20).
        data_dir: TFDS data directory.
        download: let TFDS download CIFAR-100 if needed.
        image_size: optional resize (CIFAR-FS uses the native 32x32).
        dtype: `"float32"` or `"uint8"` (a quarter of the memory), as in `from_tfds`.

    Returns:
        `(images, labels)`: float32 `[n, 32, 32, 3]` in `[0, 1]`, int64 CIFAR-100 fine
        label ids.

    Example:

    >>> import keras_meta as km
    >>> x, y = km.data.cifar_fs("test")                       # doctest: +SKIP
    >>> test_episodes = km.data.episodes(x, y, ways=5, shots=1, queries=15,
    ...                                  seed=0, num_episodes=600)   # doctest: +SKIP
    """
    return _load(
        "cifar_fs", split, data_dir=data_dir, download=download, image_size=image_size,
        dtype=dtype,
    )


def fc100(
    split: str = "train",
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    image_size: int | tuple[int, int] | None = None,
    dtype: str = "float32",
) -> tuple[np.ndarray, np.ndarray]:
    """FC100: CIFAR-100 split by superclass, 12/4/4 superclasses (60/20/20 classes).

    The split of Oreshkin et al. (2018, TADAM): no superclass is shared between splits,
    so test classes are further from the training classes than in CIFAR-FS. Reads TFDS
    `cifar100` (`train+test`, 600 images per class) and keeps the fine classes listed in
    `class_lists/fc100_<split>.txt`.

    Args:
        split: `"train"` (60 classes), `"validation"` (20) or `"test"` (20).
        data_dir: TFDS data directory.
        download: let TFDS download CIFAR-100 if needed.
        image_size: optional resize (FC100 uses the native 32x32).
        dtype: `"float32"` or `"uint8"` (a quarter of the memory), as in `from_tfds`.

    Returns:
        `(images, labels)`: float32 `[n, 32, 32, 3]` in `[0, 1]` (or uint8), int64
        CIFAR-100 fine label ids.

    Example:

    >>> import keras_meta as km
    >>> x, y = km.data.fc100("test", dtype="uint8")           # doctest: +SKIP
    >>> test_episodes = km.data.episodes(x, y, ways=5, shots=5, queries=15, seed=0,
    ...                                  num_episodes=600, scale=255)   # doctest: +SKIP
    """
    return _load(
        "fc100", split, data_dir=data_dir, download=download, image_size=image_size,
        dtype=dtype,
    )


def cub(
    split: str = "train",
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    image_size: int | tuple[int, int] | None = 84,
    crop_to_box: bool = False,
    dtype: str = "uint8",
) -> tuple[np.ndarray, np.ndarray]:
    """CUB-200-2011 birds in the 100/50/50-class split of Chen et al. (2019).

    Reads TFDS `caltech_birds2011` (`train+test`, about 60 images per class) and keeps
    the classes listed in `class_lists/cub_<split>.txt`: of the 200 classes in their
    official order (label id `i`), train has those with `i % 2 == 0`, validation
    `i % 4 == 1` and test `i % 4 == 3`, the rule of "A Closer Look at Few-shot
    Classification". Images are resized to `image_size` without keeping the aspect ratio.

    Papers differ on the bounding boxes: by default (`crop_to_box=False`, as Chen et al.)
    the whole image is used; `crop_to_box=True` first crops each image to its bounding
    box (TFDS feature `bbox`, edges rounded to the nearest pixel), as other papers do.

    Args:
        split: `"train"` (100 classes), `"validation"` (50) or `"test"` (50).
        data_dir: TFDS data directory.
        download: let TFDS download CUB-200-2011 if needed.
        image_size: an int or `(height, width)`; the images differ in size, so `None`
            fails unless they happen to match.
        crop_to_box: crop each image to its bird's bounding box before resizing.
        dtype: `"uint8"` (default: all of CUB at 84x84 is 250 MB as uint8, four
            times that as float32; sample with `episodes(..., scale=255)`) or
            `"float32"`.

    Returns:
        `(images, labels)`: uint8 `[n, 84, 84, 3]` (or float32 in `[0, 1]`), int64 CUB
        label ids (`NNN - 1` for the class folder `NNN.Name`).

    Example:

    >>> import keras_meta as km
    >>> x, y = km.data.cub("test", crop_to_box=True)          # doctest: +SKIP
    >>> test_episodes = km.data.episodes(x, y, ways=5, shots=1, queries=15, seed=0,
    ...                                  num_episodes=600, scale=255)   # doctest: +SKIP
    """
    check_bool("crop_to_box", crop_to_box)
    return _load(
        "cub", split, data_dir=data_dir, download=download, image_size=image_size,
        dtype=dtype, box_key="bbox" if crop_to_box else None,
    )
