"""Images stored as one folder per class."""

import os
import warnings
from collections.abc import Sequence

import numpy as np

from keras_meta.data import _images
from keras_meta.validation import check_choice

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def image_folder(
    path: str | os.PathLike,
    image_size: int | tuple[int, int] | None = None,
    color_mode: str = "rgb",
    interpolation: str = "lanczos",
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
    invert: bool = False,
    dtype: str = "float32",
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Loads a `path/<class_name>/<image>` tree into arrays.

    Class ids follow the sorted class folder names; images of a class are in sorted file
    order. Class folders without images are skipped (with a warning). Files directly
    under `path` are ignored.

    Args:
        path: the root folder.
        image_size: an int or `(height, width)` to resize to (PIL, anti-aliased when
            downsampling); `None` keeps the stored size, which must then be the same for
            all.
        color_mode: `"rgb"` (3 channels), `"grayscale"` (1) or `"rgba"` (4).
        interpolation: PIL filter, one of "lanczos", "box", "bilinear", "bicubic",
            "nearest".
        extensions: file name endings (case-insensitive) that count as images.
        invert: return `1 - image`, e.g. for dark ink on a light background.
        dtype: `"float32"` (values in `[0, 1]`) or `"uint8"` (the 8-bit pixels, a
            quarter of the memory; `255 - pixel` with `invert`): sample them with
            `episodes(..., scale=255)` for the float32 values.

    Returns:
        `(images, labels, class_names)`: float32 `[n, h, w, channels]` in `[0, 1]`
        (or uint8), int64 `[n]`, and the list of class names (index = class id).

    Example:

    >>> import keras_meta as km
    >>> x, y, names = km.data.image_folder("my_images", 84)  # doctest: +SKIP
    >>> ds = km.data.episodes(x, y, ways=5, shots=5, queries=15)  # doctest: +SKIP
    """
    check_choice("dtype", dtype, ("float32", "uint8"))
    if color_mode not in _images.COLOR_MODES:
        raise ValueError(
            f"`color_mode` must be one of {sorted(_images.COLOR_MODES)}; received {color_mode!r}."
        )
    mode = _images.COLOR_MODES[color_mode]
    size = _images.check_image_size(image_size)
    resample = _images.check_resample(interpolation)
    path = os.fspath(path)
    class_names, class_files = _list_class_files(path, extensions)
    images, labels = [], []
    for label, files in enumerate(class_files):
        for full in files:
            with open(full, "rb") as handle:
                image = _images.decode(handle.read(), repr(full), size, mode, resample)
            if images and image.shape != images[0].shape:
                raise ValueError(
                    f"The image {full!r} has shape {image.shape}, but earlier images "
                    "have shape "
                    f"{images[0].shape}; pass image_size= to resize all images to one "
                    "size."
                )
            images.append(image)
            labels.append(label)
    array = np.stack(images)
    if array.ndim == 3:
        array = array[..., np.newaxis]
    if dtype == "uint8":
        if invert:
            array = np.subtract(255, array, dtype=np.uint8)
    else:
        array = array.astype(np.float32)
        array /= np.float32(255)
        if invert:
            array = 1.0 - array
    return array, np.asarray(labels, np.int64), class_names


def _list_class_files(
    path: str, extensions: Sequence[str] = IMAGE_EXTENSIONS, stacklevel: int = 3
) -> tuple[list[str], list[list[str]]]:
    """`(class_names, files)` of a `path/<class_name>/<image>` tree, in sorted order.

    Class folders without images are skipped with a warning; files directly under
    `path` are ignored. `files[c]` are the full paths of class `c`'s images.
    """
    if not os.path.isdir(path):
        raise FileNotFoundError(
            f"The image folder {path!r} does not exist or is not a folder; expected a "
            "folder "
            "with one sub-folder of images per class (<path>/<class_name>/<image>)."
        )
    endings = tuple(e.lower() for e in extensions)
    class_names, class_files, empty = [], [], []
    for class_dir in sorted(e.name for e in os.scandir(path) if e.is_dir()):
        folder = os.path.join(path, class_dir)
        files = sorted(
            e.name for e in os.scandir(folder) if e.is_file() and e.name.lower().endswith(endings)
        )
        if not files:
            empty.append(class_dir)
            continue
        class_names.append(class_dir)
        class_files.append([os.path.join(folder, f) for f in files])
    if empty:
        warnings.warn(
            f"Skipped {len(empty)} class folders without images in {path!r}: {empty[:10]}",
            stacklevel=stacklevel,
        )
    if not class_files:
        raise ValueError(
            f"No images found in {path!r}; expected <path>/<class_name>/<image> with "
            "one of the "
            f"extensions {list(endings)}."
        )
    return class_names, class_files
