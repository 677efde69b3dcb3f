"""8-bit storage of image examples, decoded to float32 per episode, bit for bit.

A sampler holds every example in memory; images stored as float32 take four times
the bytes of their 8-bit pixels. `compact()` stores an example array as uint8 codes
plus a 256-entry float32 lookup table whenever that reproduces every value exactly, so
an episode gathered from the codes and looked up in the table is bit-identical to the
same episode gathered from the float32 array.
"""

import numpy as np
import tensorflow as tf

_LEVELS = np.arange(256, dtype=np.float32)

# The float32 palettes of 8-bit images the loaders (and users) produce: `u / 255`
# (PIL-based loaders, Omniglot), `1 - u / 255` (inverted folders) and `u * (1 / 255)`
# (`tf.image.convert_image_dtype`, e.g. TFDS). Each is indexed by the code `u`.
PALETTES = (
    _LEVELS / np.float32(255),
    np.float32(1) - _LEVELS / np.float32(255),
    _LEVELS * np.float32(1 / 255),
)

# Rows per chunk when checking a float array, so the check's temporaries stay small.
_CHUNK_VALUES = 1 << 24


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
    """`(stored, table)`: how a sampler keeps the examples `x` in memory.

    Args:
        x: a numpy array of examples (already checked).
        scale: `None`, or the divisor of integer examples (255 maps uint8 pixels to
            `[0, 1]`).

    Returns:
        `table` is a float32 `[256]` lookup table when `stored` is uint8 codes, else
        None (`stored` is then `x`, cast to float32 per episode, then divided by
        `scale` when given).
    """
    if x.dtype == np.uint8:
        if scale is None:
            return x, _LEVELS
        return x, _LEVELS / np.float32(scale)
    if x.dtype == np.float32 and x.size and scale is None:
        for palette in PALETTES:
            codes = _codes_for(x, palette)
            if codes is not None:
                return codes, palette
    return x, None


def decode(stored, table, scale=None):
    """The float32 examples of gathered `stored` rows (inside the `tf.data` graph)."""
    if table is not None:
        return tf.gather(table, tf.cast(stored, tf.int32))
    values = tf.cast(stored, tf.float32)
    if scale is not None:
        values = values / tf.constant(scale, tf.float32)
    return values
