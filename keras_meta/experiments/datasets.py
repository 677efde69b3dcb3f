"""What each dataset of a run needs and offers: `--data-dir`, class splits, defaults.

One `DatasetSpec` per value of `RunConfig.dataset`. The configuration fills its
`split`, `image_size` and `color_mode` from the spec when they are not given, and
`check_config` applies the spec's rules, so that a configuration that exists can
be loaded (`keras_meta.experiments.sources` loads it).

- `omniglot`, `folder`: images held in memory, split into train/validation/test
  classes here (`mixed`/`official` for Omniglot, `random` for a folder).
- `cifar_fs`, `fc100`, `cub` (TensorFlow Datasets) and `mini_imagenet`,
  `tiered_imagenet` (streamed from an ImageNet train folder) are benchmarks:
  their classes come split, `split="benchmark"`.
- `sinusoid`: regression, fresh tasks, `split="none"`.

Example:

>>> SPECS["cifar_fs"].image_size, SPECS["mini_imagenet"].data_dir
(32, 'required')
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from keras_meta.experiments.config import RunConfig

# The split of a benchmark dataset: the classes its authors assigned to
# train, validation and test.
BENCHMARK = "benchmark"
SPLITS = ("mixed", "official", "random", BENCHMARK, "none")


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """What a dataset needs (`data_dir`: `"required"`, `"optional"`, `"none"`) and its
    defaults.

    Example:

    >>> SPECS["omniglot"].splits
    ('mixed', 'official')
    """

    name: str
    data_dir: str
    data_dir_help: str
    splits: tuple[str, ...]
    split_help: str
    image_size: int | None = None
    color_mode: str | None = None
    # "memory": images loaded into arrays; "tfds": arrays from TensorFlow
    # Datasets; "stream": files read per episode; "regression": no images.
    kind: str = "memory"
    # The stored image size, when every image has it (no resize needed).
    native_size: int | None = None

    @property
    def split(self) -> str:
        """The default split."""
        return self.splits[0]

    @property
    def streams(self) -> bool:
        """Whether episodes are always read from files."""
        return self.kind == "stream"


_TFDS_DIR = "optional: the TensorFlow Datasets data directory (default: TFDS's own)"
_IMAGENET_DIR = "the ImageNet train folder (<dir>/<wnid>/*.JPEG)"
_BENCHMARK_HELP = "split='benchmark' (the benchmark's own train/validation/test classes)"

SPECS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            "omniglot", "required",
            "the folder with images_background.zip and images_evaluation.zip",
            ("mixed", "official"),
            "split='mixed' (both archives, shuffled) or 'official' (background/evaluation)",
            28, "grayscale",
        ),
        DatasetSpec("sinusoid", "none", "", ("none",), "split='none' (fresh tasks)",
                    28, "grayscale", kind="regression"),
        DatasetSpec(
            "folder", "required", "one sub-folder of images per class", ("random",),
            "split='random' (a seeded split of its classes)", 28, "grayscale",
        ),
        DatasetSpec("cifar_fs", "optional", _TFDS_DIR, (BENCHMARK,), _BENCHMARK_HELP,
                    32, "rgb", kind="tfds", native_size=32),
        DatasetSpec("fc100", "optional", _TFDS_DIR, (BENCHMARK,), _BENCHMARK_HELP,
                    32, "rgb", kind="tfds", native_size=32),
        DatasetSpec("cub", "optional", _TFDS_DIR, (BENCHMARK,), _BENCHMARK_HELP,
                    84, "rgb", kind="tfds"),
        DatasetSpec("mini_imagenet", "required", _IMAGENET_DIR, (BENCHMARK,), _BENCHMARK_HELP,
                    84, "rgb", kind="stream"),
        DatasetSpec("tiered_imagenet", "required", _IMAGENET_DIR, (BENCHMARK,), _BENCHMARK_HELP,
                    84, "rgb", kind="stream"),
    )
}  # fmt: skip
DATASETS = tuple(SPECS)


def defaults(dataset: str) -> dict:
    """The fields a configuration takes from its dataset when they are not given.

    Example:

    >>> defaults("cub")
    {'split': 'benchmark', 'image_size': 84, 'color_mode': 'rgb'}
    """
    spec = SPECS[dataset]
    return {"split": spec.split, "image_size": spec.image_size, "color_mode": spec.color_mode}


def data_dir_help() -> str:
    """The `--data-dir` help: what the folder is, per dataset.

    Example:

    >>> data_dir_help().startswith("omniglot: ")
    True
    """
    groups: dict[str, list[str]] = {}
    for spec in SPECS.values():
        if spec.data_dir != "none":
            groups.setdefault(spec.data_dir_help, []).append(spec.name)
    return "; ".join(f"{', '.join(names)}: {text}" for text, names in groups.items())


def check_config(c: RunConfig) -> None:
    """The dataset's rules: its splits, and the options it cannot take.

    Example:

    >>> from keras_meta.experiments import RunConfig
    >>> RunConfig(dataset="cifar_fs", split="random")
    Traceback (most recent call last):
    ...
    ValueError: The cifar_fs dataset takes split='benchmark' (the benchmark's own \
train/validation/test classes); received split='random'.
    """
    spec = SPECS[c.dataset]
    if c.split not in spec.splits:
        raise ValueError(
            f"The {c.dataset} dataset takes {spec.split_help}; received split={c.split!r}."
        )
    if c.split == BENCHMARK and c.split_sizes is not None:
        raise ValueError(
            f"The {c.dataset} dataset comes with its own class split; `split_sizes` does "
            f"not apply; received split_sizes={list(c.split_sizes)!r}."
        )
    if spec.streams and c.augmentation == "rotations_as_classes":
        raise ValueError(
            "augmentation='rotations_as_classes' needs the images in memory; received it "
            f"with the streamed {c.dataset} dataset (use 'class_rotation' or none)."
        )
