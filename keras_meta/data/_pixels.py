"""8-bit storage of image examples, decoded to float32 per episode, bit for bit.

A sampler holds every example in memory; images stored as float32 take four times
the bytes of their 8-bit pixels. `compact()` stores an example array as uint8 codes
whenever the float32 values are exactly one 8-bit encoding of them, so an episode
gathered from the codes and decoded is bit-identical to the same episode gathered from
the float32 array.
"""

import numpy as np
import tensorflow as tf

_LEVELS = np.arange(256, dtype=np.float32)
_ONE_255TH = np.float32(1 / 255)

# The float32 encodings of 8-bit images the loaders (and users) produce, each as the
# numpy table of its 256 values (to check an array against) and the same float32 ops in
# TF (to decode an episode): `u / 255` (PIL-based loaders, Omniglot), `1 - u / 255`
# (inverted folders) and `u * (1 / 255)` (`tf.image.convert_image_dtype`, e.g. TFDS).
# One correctly rounded IEEE op each, so TF's result is numpy's bit for bit (the tests
# check it); ops are several times faster than a table lookup on whole episodes.
ENCODINGS = (
    (_LEVELS / np.float32(255), lambda v: v / 255.0),
    (np.float32(1) - _LEVELS / np.float32(255), lambda v: 1.0 - v / 255.0),
    (_LEVELS * _ONE_255TH, lambda v: v * tf.constant(_ONE_255TH)),
)

# Values per chunk when checking a float array, so the check's temporaries stay small.
_CHUNK_VALUES = 1 << 22


def _codes_for(x, palette):
    """uint8 codes `u` with `palette[u] == x` everywhere, or None."""
    codes = np.empty(x.shape, np.uint8)
    flat_x, flat_codes = x.reshape(-1), codes.reshape(-1)
    increasing = palette[1] > palette[0]
    for start in range(0, flat_x.size, _CHUNK_VALUES):
        chunk = flat_x[start : start + _CHUNK_VALUES]
        if not np.isfinite(chunk).all():
            return None
        level = chunk * np.float32(255) if increasing else (1 - chunk) * np.float32(255)
        code = np.clip(np.rint(level), 0, 255).astype(np.uint8)
        if not np.array_equal(palette[code], chunk):
            return None
        flat_codes[start : start + _CHUNK_VALUES] = code
    return codes


def compact(x, scale=None):
    """`(stored, decode)`: how a sampler keeps the examples `x` in memory.

    Args:
        x: a numpy array of examples (already checked).
        scale: `None`, or the divisor of the examples (255 maps uint8 pixels to
            `[0, 1]`).

    Returns:
        `stored` is uint8 codes where `x` is exactly an 8-bit encoding, else `x`;
        `decode` maps gathered rows of `stored` to the float32 examples, inside the
        `tf.data` graph.
    """
    if scale is None and x.dtype == np.float32 and x.size:
        for palette, ops in ENCODINGS:
            codes = _codes_for(x, palette)
            if codes is not None:
                return codes, lambda rows, ops=ops: ops(tf.cast(rows, tf.float32))
    if scale is None:
        return x, lambda rows: tf.cast(rows, tf.float32)
    divisor = tf.constant(scale, tf.float32)
    return x, lambda rows: tf.cast(rows, tf.float32) / divisor
