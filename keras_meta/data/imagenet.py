"""mini-ImageNet and tiered-ImageNet: the standard class splits of an ImageNet folder, streamed.

Neither dataset fits in memory at 84x84 (tiered-ImageNet is about 16 GB as 8-bit
pixels), so the loaders here list files only: they return a `ClassFiles`, the image
files of each class of the split, which `stream_episodes` and `StreamingEpisodeSampler`
read episode by episode. The class splits ship as package data
(`keras_meta/data/class_lists/*.txt`, one wnid per line, the source in the header).
"""

import os
from collections.abc import Iterator, Mapping, Sequence
from importlib import resources

from keras_meta.data import _images
from keras_meta.validation import check_choice, check_int

SPLITS = ("train", "validation", "test")
BENCHMARKS = ("mini_imagenet", "tiered_imagenet")
# ILSVRC-12 stores JPEGs as `.JPEG`; a few are PNG or CMYK inside, which
# `tf.io.decode_image` reads whatever the extension.
IMAGENET_EXTENSIONS = (".jpeg", ".jpg", ".png")
_MAX_LISTED = 5


class ClassFiles(Mapping):
    """The image files of each class of a split, and the size to stream them at.

    A read-only mapping `{class_name: [file, ...]}` (classes in the class list's
    order, files in sorted name order), which `stream_episodes` and
    `StreamingEpisodeSampler` take as their `source`; when they are given no
    `image_size`, they use this one. Made by `mini_imagenet` and `tiered_imagenet`.

    Args:
        files: `{class_name: [file, ...]}`.
        image_size: `(height, width)` (or an int) to resize images to, or `None`.
        name: what the classes are, e.g. `"mini_imagenet"`.
        split: which split of `name` they are.

    Example:

    >>> import keras_meta as km
    >>> source = km.data.ClassFiles({"a": ["a/1.png", "a/2.png"], "b": ["b/1.png"]}, 84)
    >>> list(source), source["a"], source.image_size, source.num_images
    (['a', 'b'], ['a/1.png', 'a/2.png'], (84, 84), 3)
    """

    def __init__(
        self,
        files: Mapping[str, Sequence[str | os.PathLike]],
        image_size: int | tuple[int, int] | None = None,
        name: str | None = None,
        split: str | None = None,
    ):
        self._files = {str(c): [os.fspath(f) for f in paths] for c, paths in files.items()}
        self.image_size = _images.check_image_size(image_size)
        self.name = name
        self.split = split

    def __getitem__(self, class_name: str) -> list[str]:
        return list(self._files[class_name])

    def __iter__(self) -> Iterator[str]:
        return iter(self._files)

    def __len__(self) -> int:
        return len(self._files)

    @property
    def num_images(self) -> int:
        """The number of image files of all classes."""
        return sum(len(f) for f in self._files.values())

    def __repr__(self) -> str:
        what = " ".join(s for s in (self.name, self.split) if s)
        return (
            f"<ClassFiles {what + ': ' if what else ''}{len(self)} classes, "
            f"{self.num_images} images, image_size={self.image_size}>"
        )


def _class_list(benchmark: str, split: str) -> list[tuple[str, str | None]]:
    """`[(wnid, category)]` of a packaged class list; category from `# category` lines."""
    name = f"{benchmark}_{split}.txt"
    try:
        text = resources.files("keras_meta.data").joinpath("class_lists", name).read_text()
    except FileNotFoundError:
        raise FileNotFoundError(
            f"The class list {name!r} is missing from keras_meta/data/class_lists/; the "
            "package is installed without its data files (reinstall keras_meta)."
        ) from None
    rows, category = [], None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("# category "):
            category = line.split()[-1]
        elif line and not line.startswith("#"):
            rows.append((line, category))
    return rows


def imagenet_classes(benchmark: str, split: str) -> list[str]:
    """The ImageNet wnids of one split of mini-ImageNet or tiered-ImageNet.

    mini-ImageNet: Ravi & Larochelle (2017)'s split, 64/16/20 classes;
    tiered-ImageNet: Ren et al. (2018)'s split, 351/97/160 classes from 20/6/8
    high-level ILSVRC categories. Class ids of `mini_imagenet`/`tiered_imagenet`
    follow this order.

    Args:
        benchmark: `"mini_imagenet"` or `"tiered_imagenet"`.
        split: `"train"`, `"validation"` or `"test"`.

    Example:

    >>> import keras_meta as km
    >>> test = km.data.imagenet_classes("mini_imagenet", "test")
    >>> len(test), test[0]
    (20, 'n01930112')
    """
    check_choice("benchmark", benchmark, BENCHMARKS)
    check_choice("split", split, SPLITS)
    return [wnid for wnid, _ in _class_list(benchmark, split)]


def _split_files(benchmark, root, split, image_size, images_per_class):
    check_choice("split", split, SPLITS)
    image_size = _images.check_image_size(image_size)
    images_per_class = check_int("images_per_class", images_per_class, allow_none=True)
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise FileNotFoundError(
            f"The ImageNet folder {root!r} does not exist or is not a folder; expected an "
            "ImageNet train folder with one sub-folder of images per class "
            "(<root>/<wnid>/*.JPEG, e.g. ILSVRC2012's train/)."
        )
    wnids = imagenet_classes(benchmark, split)
    files, missing = {}, []
    for wnid in wnids:
        folder = os.path.join(root, wnid)
        try:
            names = sorted(
                e.name
                for e in os.scandir(folder)
                if e.is_file() and e.name.lower().endswith(IMAGENET_EXTENSIONS)
            )
        except (FileNotFoundError, NotADirectoryError):
            names = []
        if not names:
            missing.append(wnid)
            continue
        if images_per_class is not None:
            names = names[:images_per_class]
        files[wnid] = [os.path.join(folder, n) for n in names]
    if missing:
        hint = ""
        if os.path.isdir(os.path.join(root, "train")):
            hint = f" {os.path.join(root, 'train')!r} exists: is that the folder to pass?"
        raise FileNotFoundError(
            f"{root!r} lacks {len(missing)} of the {len(wnids)} {benchmark} {split} classes "
            f"(no <root>/<wnid>/ folder with images): {missing[:_MAX_LISTED]}"
            + (f" and {len(missing) - _MAX_LISTED} more" if len(missing) > _MAX_LISTED else "")
            + ". Expected an ImageNet train folder (<root>/<wnid>/*.JPEG, e.g. ILSVRC2012's "
            f"train/) with every class of the split.{hint}"
        )
    return ClassFiles(files, image_size, name=benchmark, split=split)


def mini_imagenet(
    root: str | os.PathLike,
    split: str = "train",
    image_size: int | tuple[int, int] | None = 84,
    images_per_class: int | None = 600,
) -> ClassFiles:
    """mini-ImageNet (Vinyals et al. 2016, Ravi & Larochelle's split) from an ImageNet folder.

    The 64/16/20 train/validation/test classes of Ravi & Larochelle (2017), read from
    an ImageNet train folder in the standard layout (`root/<wnid>/*.JPEG`, e.g.
    ILSVRC2012's train/). Ravi & Larochelle's CSVs name 600 particular images per
    class; this takes **the first `images_per_class` files of each class in sorted
    name order** instead (600 by default, `None` for all ~1,300), so the images are
    not those of the published benchmark files, only the classes and counts are. Only
    file names are listed; stream the episodes:

        km.data.stream_episodes(km.data.mini_imagenet(root, "test"), ways=5, shots=1,
                                queries=15, seed=0)

    Images are resized to `image_size` (84 by default) when streamed. Class `c` is
    the `c`-th wnid of `imagenet_classes("mini_imagenet", split)`.

    Args:
        root: the ImageNet train folder.
        split: `"train"`, `"validation"` or `"test"`.
        image_size: an int or `(height, width)` to resize to when streamed.
        images_per_class: how many files of each class (sorted by name), or `None`
            for all.

    Returns:
        A `ClassFiles`, `{wnid: [file, ...]}`, with `image_size` set.

    Raises:
        FileNotFoundError: naming how many and the first wnids of the split that have
            no folder with images under `root`.

    Example:

    >>> import numpy as np, tensorflow as tf, keras_meta as km
    >>> for wnid in km.data.imagenet_classes("mini_imagenet", "test"):
    ...     for i in range(2):
    ...         jpeg = tf.io.encode_jpeg(np.full((30, 40, 3), 100, np.uint8))
    ...         tf.io.write_file(f"imagenet/{wnid}/{wnid}_{i}.JPEG", jpeg)
    >>> source = km.data.mini_imagenet("imagenet", "test")
    >>> len(source), source.image_size
    (20, (84, 84))
    >>> ex, qy = next(iter(km.data.stream_episodes(source, ways=5, shots=1, queries=1, seed=0)))
    >>> tuple(ex["support_x"].shape), tuple(qy.shape)
    ((5, 84, 84, 3), (5,))
    """
    return _split_files("mini_imagenet", root, split, image_size, images_per_class)


def tiered_imagenet(
    root: str | os.PathLike,
    split: str = "train",
    image_size: int | tuple[int, int] | None = 84,
    images_per_class: int | None = None,
) -> ClassFiles:
    """tiered-ImageNet (Ren et al., 2018) from an ImageNet folder.

    The 351/97/160 train/validation/test classes of Ren et al. (2018), which group
    ILSVRC-12 classes by 34 high-level categories (20/6/8), so that test classes are
    far from training classes. Read from an ImageNet train folder in the standard
    layout (`root/<wnid>/*.JPEG`); all images of each class by default, as in the
    paper (`images_per_class` takes the first ones in sorted name order). Only file
    names are listed; stream the episodes:

        km.data.stream_episodes(km.data.tiered_imagenet(root, "test"), ways=5, shots=1,
                                queries=15, seed=0)

    Images are resized to `image_size` (84 by default) when streamed. Class `c` is
    the `c`-th wnid of `imagenet_classes("tiered_imagenet", split)`.

    Args:
        root: the ImageNet train folder.
        split: `"train"`, `"validation"` or `"test"`.
        image_size: an int or `(height, width)` to resize to when streamed.
        images_per_class: how many files of each class (sorted by name), or `None`
            for all.

    Returns:
        A `ClassFiles`, `{wnid: [file, ...]}`, with `image_size` set.

    Raises:
        FileNotFoundError: naming how many and the first wnids of the split that have
            no folder with images under `root`.

    Example:

    >>> import keras_meta as km
    >>> source = km.data.tiered_imagenet("path/to/ILSVRC2012/train", "test")  # doctest: +SKIP
    >>> len(source)                                                           # doctest: +SKIP
    160
    """
    return _split_files("tiered_imagenet", root, split, image_size, images_per_class)
