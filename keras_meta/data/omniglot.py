"""Omniglot (Lake et al., 2015) from its official archives or extracted folders."""

import hashlib
import os
import tempfile
import warnings
import zipfile
from collections.abc import Mapping

import numpy as np

from keras_meta.data import _images
from keras_meta.data._omniglot_download import OMNIGLOT_ORIGIN, SPLITS, download_omniglot
from keras_meta.validation import check_bool, check_choice

_OFFICIAL_SIZE = 105
# Bump when the decoded arrays change, so stale caches are not reused.
_CACHE_FORMAT = 1

_LAYOUT = (
    "Expected the official Omniglot layout: a folder holding images_background.zip "
    "and/or "
    "images_evaluation.zip (or the extracted images_background/ and images_evaluation/ "
    "folders), or one such zip or extracted folder, with images at "
    "<split>/<Alphabet>/characterNN/XXXX_YY.png."
)


def _default_cache_dir():
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(home, "keras_meta", "omniglot")


def _infer_split(name):
    lowered = name.lower()
    found = [s for s in SPLITS if s in lowered]
    return found[0] if len(found) == 1 else None


def _resolve_sources(path, split):
    """Returns `[(split, kind, location)]` with kind "zip" or "folder"."""
    wanted = SPLITS if split == "all" else (split,)
    if not os.path.exists(path):
        raise FileNotFoundError(f"The Omniglot path {path!r} does not exist. {_LAYOUT}")
    if os.path.isfile(path):
        if not zipfile.is_zipfile(path):
            raise ValueError(
                f"The Omniglot path {path!r} is a file but not a zip archive. {_LAYOUT}"
            )
        return [(_direct_split(path, split), "zip", path)]

    sources = []
    for s in wanted:
        archive = os.path.join(path, f"images_{s}.zip")
        folder = os.path.join(path, f"images_{s}")
        # The archive is authoritative (an extracted copy may be partial), so it wins.
        if os.path.isfile(archive):
            sources.append((s, "zip", archive))
        elif os.path.isdir(folder):
            sources.append((s, "folder", folder))
    if len(sources) == len(wanted):
        return sources
    if not sources and _looks_like_split_folder(path):
        return [(_direct_split(path, split), "folder", path)]
    missing = [s for s in wanted if s not in {src[0] for src in sources}]
    raise FileNotFoundError(
        f"Could not find the Omniglot {' and '.join(missing)} split in {path!r}: "
        "neither "
        + " nor ".join(f"images_{s}.zip or images_{s}/" for s in missing)
        + f" is there. {_LAYOUT} Pass download=True to fetch the official archives."
    )


def _missing_splits(path, split):
    """The splits that `path` (a folder, or nothing yet) holds neither as zip nor folder."""
    wanted = SPLITS if split == "all" else (split,)
    if os.path.isfile(path):
        return []
    if not os.path.isdir(path):
        return list(wanted)
    missing = [
        s
        for s in wanted
        if not os.path.isfile(os.path.join(path, f"images_{s}.zip"))
        and not os.path.isdir(os.path.join(path, f"images_{s}"))
    ]
    if len(missing) == len(wanted) and _looks_like_split_folder(path):
        return []
    return missing


def _direct_split(path, split):
    inferred = _infer_split(os.path.basename(os.path.normpath(path)))
    if split == "all":
        raise ValueError(
            f"split='all' needs the folder holding both splits; {path!r} is a single "
            "split. "
            f"{_LAYOUT}"
        )
    if inferred is not None and inferred != split:
        raise ValueError(
            f"The Omniglot path {path!r} holds the {inferred!r} split, but "
            f"split={split!r} was "
            "requested. Pass the matching split, or the folder holding both archives."
        )
    return split


def _looks_like_split_folder(path):
    for alphabet in os.scandir(path):
        if alphabet.is_dir():
            for character in os.scandir(alphabet.path):
                if character.is_dir():
                    return True
    return False


def _list_zip(location):
    with zipfile.ZipFile(location) as archive:
        names = [
            n
            for n in archive.namelist()
            if n.lower().endswith(".png") and not n.startswith("__MACOSX/")
        ]
    return _group(names, location, sep="/")


def _list_folder(location):
    names = []
    for root, _, files in os.walk(location):
        for f in files:
            if f.lower().endswith(".png"):
                names.append(os.path.relpath(os.path.join(root, f), location))
    return _group(names, location, sep=os.sep)


def _group(names, location, sep):
    """Groups image paths by (alphabet, character); checks they sit at a valid depth."""
    if not names:
        raise ValueError(f"No PNG images found in {location!r}. {_LAYOUT}")
    depths = {len(n.split(sep)) for n in names}
    depth = min(depths)
    if depth < 3 or len(depths) > 1:
        odd = next(n for n in names if len(n.split(sep)) < 3 or len(n.split(sep)) != depth)
        raise ValueError(
            f"Unexpected image path {odd!r} in {location!r}: images must sit exactly "
            "at "
            f"<Alphabet>/<character>/<image>.png. {_LAYOUT}"
        )
    groups = {}
    for n in names:
        alphabet, character, _ = n.split(sep)[-3:]
        groups.setdefault((alphabet, character), []).append(n)
    return {key: sorted(files) for key, files in sorted(groups.items())}


def _fingerprint(kind, location, groups):
    if kind == "zip":
        stat = os.stat(location)
        parts = [stat.st_size, stat.st_mtime_ns]
    else:
        sizes = mtimes = 0
        for files in groups.values():
            for f in files:
                stat = os.stat(os.path.join(location, f))
                sizes += stat.st_size
                mtimes = max(mtimes, stat.st_mtime_ns)
        parts = [sum(len(f) for f in groups.values()), sizes, mtimes]
    return parts


def _decode_split(kind, location, groups, size, resample):
    images, labels, alphabets, characters = [], [], [], []
    archive = zipfile.ZipFile(location) if kind == "zip" else None
    try:
        for label, ((alphabet, character), files) in enumerate(groups.items()):
            alphabets.append(alphabet)
            characters.append(character)
            for f in files:
                if archive is not None:
                    data = archive.read(f)
                    source = f"{f!r} in {location!r}"
                else:
                    full = os.path.join(location, f)
                    with open(full, "rb") as handle:
                        data = handle.read()
                    source = repr(full)
                images.append(_images.decode(data, source, size, "L", resample))
                labels.append(label)
    finally:
        if archive is not None:
            archive.close()
    # Ink is 1: the archives draw black strokes on white.
    images = np.subtract(255, np.stack(images), dtype=np.uint8)
    return {
        "images": images,
        "labels": np.asarray(labels, np.int64),
        "alphabet": np.asarray(alphabets, dtype=str),
        "character": np.asarray(characters, dtype=str),
    }


def _cache_path(cache_dir, split, size, interpolation, kind, location, groups):
    key = repr(
        (
            _CACHE_FORMAT,
            os.path.abspath(location),
            kind,
            split,
            size,
            interpolation,
            _fingerprint(kind, location, groups),
        )
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return os.path.join(cache_dir, f"omniglot-{split}-{size[0]}x{size[1]}-{digest}.npz")


def _read_cache(path):
    try:
        with np.load(path, allow_pickle=False) as cached:
            return {k: cached[k] for k in ("images", "labels", "alphabet", "character")}
    except Exception as error:  # noqa: BLE001 - a broken cache is rebuilt, never fatal
        warnings.warn(f"Ignoring the unreadable Omniglot cache {path!r}: {error}", stacklevel=3)
        return None


def _write_cache(path, arrays):
    directory = os.path.dirname(path)
    try:
        os.makedirs(directory, exist_ok=True)
        # Write then rename, so a concurrent reader never sees a partial file.
        fd, tmp = tempfile.mkstemp(suffix=".npz", dir=directory)
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)
        # mkstemp makes the file private; a cache is as readable as any other file.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except OSError as error:
        warnings.warn(
            f"Could not write the Omniglot cache in {directory!r} ({error}); decoding "
            "again next "
            "time. Pass cache_dir= a writable folder to cache the decoded arrays.",
            stacklevel=3,
        )


def _load_split(split, kind, location, size, interpolation, cache, cache_dir):
    groups = _list_zip(location) if kind == "zip" else _list_folder(location)
    resample = _images.check_resample(interpolation)
    cache_file = None
    if cache:
        cache_file = _cache_path(
            cache_dir or _default_cache_dir(),
            split,
            size,
            interpolation,
            kind,
            location,
            groups,
        )
        if os.path.isfile(cache_file):
            arrays = _read_cache(cache_file)
            if arrays is not None:
                return arrays
    arrays = _decode_split(kind, location, groups, size, resample)
    if cache_file is not None:
        _write_cache(cache_file, arrays)
    return arrays


def omniglot(
    path: str | os.PathLike,
    split: str = "background",
    image_size: int | None = 28,
    with_info: bool = False,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
    interpolation: str = "lanczos",
    dtype: str = "float32",
    download: bool = False,
    origin: str = OMNIGLOT_ORIGIN,
    checksums: Mapping[str, str] | None = None,
):
    """Loads Omniglot from the official archives (zip) or their extracted folders.

    Classes are characters, numbered in sorted (alphabet, character) order; images of a
    character are in sorted file order. Images are inverted so that ink is 1 and the
    background 0, and resized from 105x105 with an anti-aliasing filter (PIL's Lanczos,
    as in MAML).

    Decoded arrays are cached as `.npz` (no pickle), keyed on the source's path, size
    and modification time, the split and the image size, so that the second load takes
    about a second. The cache lives in `cache_dir` (default
    `$KERAS_HOME/keras_meta/omniglot`, i.e. `~/.keras/keras_meta/omniglot`), never next
    to the data, which may be read-only.

    Args:
        path: the folder holding `images_background.zip` / `images_evaluation.zip` (or
            the extracted `images_background/` / `images_evaluation/` folders), or one
            zip or extracted split folder directly.
        split: `"background"` (964 characters, the official training alphabets),
            `"evaluation"` (659 characters) or `"all"` (both, background classes first,
            1623).
        image_size: output side length (28 in MAML/ProtoNets, 105 or `None` for no
            resize).
        with_info: also return a dict of per-class `"alphabet"`, `"character"` and
            `"split"` name arrays (index = class id).
        cache: read and write the `.npz` cache.
        cache_dir: where to keep the cache.
        interpolation: PIL filter, one of "lanczos", "box", "bilinear", "bicubic",
            "nearest".
        dtype: `"float32"` (values in `[0, 1]`) or `"uint8"` (ink = 255, a quarter of
            the memory): sample them with `episodes(..., scale=255)` for episodes
            bit-identical to the float32 ones.
        download: when `path` lacks the archives (or folders) of `split`, fetch the
            official archives into `path` with `download_omniglot`, checked against
            their pinned SHA-256 (`OMNIGLOT_SHA256`).
        origin: the folder URL to download from (`OMNIGLOT_ORIGIN`, the official
            repository, by default), e.g. a mirror or a `file://` URL.
        checksums: `{archive name: sha256}` of the archives at `origin`; `None` for
            those of the official archives.

    Returns:
        `(images, labels)`, or `(images, labels, info)` with `with_info=True`: images
        float32 `[n, size, size, 1]` in `[0, 1]` (or uint8), labels int64 `[n]` class
        ids `0..C-1`.

    Example:

    >>> import keras_meta as km
    >>> images, labels, info = km.data.omniglot(
    ...     "data/omniglot", split="background", with_info=True)   # doctest: +SKIP
    >>> images.shape, labels.max() + 1, info["alphabet"][0]         # doctest: +SKIP
    ((19280, 28, 28, 1), 964, 'Alphabet_of_the_Magi')
    """
    check_choice("split", split, SPLITS + ("all",))
    check_choice("dtype", dtype, ("float32", "uint8"))
    size = _images.check_image_size(image_size) or (_OFFICIAL_SIZE, _OFFICIAL_SIZE)
    _images.check_resample(interpolation)
    path = os.fspath(path)
    if check_bool("download", download):
        for missing in _missing_splits(path, split):
            download_omniglot(path, missing, origin, checksums)
    parts = [
        (
            s,
            _load_split(
                s,
                kind,
                location,
                size,
                interpolation,
                cache,
                os.fspath(cache_dir) if cache_dir is not None else None,
            ),
        )
        for s, kind, location in _resolve_sources(path, split)
    ]
    images, labels, info = [], [], {"alphabet": [], "character": [], "split": []}
    offset = 0
    for s, arrays in parts:
        images.append(arrays["images"])
        labels.append(arrays["labels"] + offset)
        offset += len(arrays["character"])
        info["alphabet"].append(arrays["alphabet"])
        info["character"].append(arrays["character"])
        info["split"].append(np.full(len(arrays["character"]), s))
    images = np.concatenate(images)[..., np.newaxis]
    if dtype == "float32":
        # In place: one float32 copy at a time, not two.
        images = images.astype(np.float32)
        images /= np.float32(255)
    labels = np.concatenate(labels)
    if not with_info:
        return images, labels
    return images, labels, {k: np.concatenate(v) for k, v in info.items()}
