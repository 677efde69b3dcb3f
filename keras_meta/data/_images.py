"""Decoding and resizing of image files with PIL (shared by the file-based sources)."""

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

from keras_meta.validation import check_choice

RESAMPLING = {
    "nearest": Image.Resampling.NEAREST,
    "box": Image.Resampling.BOX,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}

COLOR_MODES = {"grayscale": "L", "rgb": "RGB", "rgba": "RGBA"}


def check_image_size(image_size, name="image_size"):
    """Returns `(height, width)` or None; accepts an int or a pair."""
    if image_size is None:
        return None
    if isinstance(image_size, (int, np.integer)) and not isinstance(image_size, bool):
        size = (int(image_size), int(image_size))
    else:
        try:
            size = tuple(int(s) for s in image_size)
        except (TypeError, ValueError):
            raise TypeError(
                f"`{name}` must be an int or a (height, width) pair; received {image_size!r}."
            ) from None
        if len(size) != 2:
            raise ValueError(
                f"`{name}` must be an int or a (height, width) pair; received {image_size!r}."
            )
    if min(size) < 1:
        raise ValueError(f"`{name}` must be positive; received {image_size!r}.")
    return size


def check_resample(interpolation):
    return RESAMPLING[check_choice("interpolation", interpolation, sorted(RESAMPLING))]


def decode(data, source, size, mode, resample):
    """Decodes image bytes to a uint8 `[h, w]` or `[h, w, c]` array, resized to `size`.

    PIL's `resize` widens the filter support by the scale factor when downsampling, i.e.
    it anti-aliases, unlike a plain point-sampled resize.

    Raises:
        ValueError naming `source` when the bytes are not a readable image.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            image = image.convert(mode)
            if size is not None and image.size != (size[1], size[0]):
                image = image.resize((size[1], size[0]), resample)
            return np.asarray(image, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ValueError(f"Could not decode the image {source}: {error}") from error
