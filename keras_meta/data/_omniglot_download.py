"""Download of the official Omniglot archives, checked against pinned SHA-256 digests."""

import hashlib
import os
import re
from collections.abc import Mapping

import keras

from keras_meta.validation import check_choice

SPLITS = ("background", "evaluation")
# Where `download_omniglot` fetches the official archives from (a folder URL).
OMNIGLOT_ORIGIN = "https://github.com/brendenlake/omniglot/raw/master/python/"
# SHA-256 of the official archives at OMNIGLOT_ORIGIN, as TFDS's omniglot builder pins
# them (tensorflow_datasets/url_checksums/omniglot.txt; 9,464,212 and 6,462,886 bytes).
OMNIGLOT_SHA256 = {
    "images_background.zip": "ad41ab679c8b5d90b271ef46be6987cc81211774a695c29dcc5367b2b26ee640",
    "images_evaluation.zip": "1f61a8f3366785b057fc117d9228e78a16e3d976c8953b2a10fcc74cf0609cee",
}


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_omniglot(
    path: str | os.PathLike,
    split: str = "all",
    origin: str = OMNIGLOT_ORIGIN,
    checksums: Mapping[str, str] | None = None,
) -> list[str]:
    """Fetches the official Omniglot archives into `path`, checked against pinned SHA-256.

    Downloads `images_background.zip` and/or `images_evaluation.zip` from `origin`
    (the official repository by default) with `keras.utils.get_file`, under a
    temporary name that becomes the archive's only once its SHA-256 matches, so a
    failed or corrupt download never leaves an archive behind. An archive already in
    `path` with the expected SHA-256 is kept, not fetched again.
    `omniglot(..., download=True)` calls this for the splits that `path` lacks.

    Args:
        path: the folder to put the archives in (created if needed).
        split: `"background"`, `"evaluation"` or `"all"` (both).
        origin: the folder URL the archives are fetched from, e.g. a mirror or a
            `file://` URL.
        checksums: `{archive name: sha256 hex}` expected of the files at `origin`;
            `None` for `OMNIGLOT_SHA256`, those of the official archives.

    Returns:
        The paths of the archives of `split`, in `SPLITS` order.

    Raises:
        ValueError: when a downloaded archive, or one already in `path`, has another
            SHA-256 than expected (naming the file and both digests); the download
            is deleted, the file already there is left alone.

    Example:

    >>> import keras_meta as km
    >>> km.data.download_omniglot("data/omniglot")          # doctest: +SKIP
    ['data/omniglot/images_background.zip', 'data/omniglot/images_evaluation.zip']
    >>> x, y = km.data.omniglot("data/omniglot", "background")  # doctest: +SKIP
    """
    check_choice("split", split, SPLITS + ("all",))
    if not isinstance(origin, str) or not origin:
        raise TypeError(
            f"`origin` must be a non-empty URL string (a folder holding the archives); "
            f"received {origin!r}."
        )
    if checksums is None:
        checksums = OMNIGLOT_SHA256
    elif not isinstance(checksums, Mapping):
        raise TypeError(
            "`checksums` must be a mapping {archive name: sha256 hex digest} or None; "
            f"received {type(checksums).__name__}."
        )
    path = os.fspath(path)
    if os.path.isfile(path):
        raise ValueError(
            f"`path` must be a folder to download the Omniglot archives into; {path!r} is "
            "a file."
        )
    os.makedirs(path, exist_ok=True)
    if not os.access(path, os.W_OK):
        # get_file would silently download to /tmp/.keras instead.
        raise PermissionError(f"Cannot download the Omniglot archives into {path!r}: not writable.")
    names = [f"images_{s}.zip" for s in (SPLITS if split == "all" else (split,))]
    # All digests are checked before anything is fetched.
    for name in names:
        expected = checksums.get(name)
        if not isinstance(expected, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", expected):
            raise ValueError(
                f"`checksums` must give the SHA-256 of {name!r} as 64 hex digits; received "
                f"{expected!r} (keys: {sorted(checksums)})."
            )
    archives = []
    for name in names:
        expected = checksums[name].lower()
        target = os.path.join(path, name)
        if os.path.isfile(target):
            found = _sha256(target)
            if found != expected:
                raise ValueError(
                    f"{target!r} is already there but its SHA-256 is {found}, not the "
                    f"expected {expected}; remove it to download it again, or pass "
                    "checksums= for other archives."
                )
            archives.append(target)
            continue
        url = origin.rstrip("/") + "/" + name
        partial = name + ".part"
        try:
            fetched = keras.utils.get_file(
                partial,
                url,
                file_hash=expected,
                hash_algorithm="sha256",
                cache_dir=path,
                cache_subdir="",
            )
        except ValueError as error:
            left = os.path.join(path, partial)
            if not os.path.isfile(left):
                raise
            found = _sha256(left)
            os.remove(left)
            raise ValueError(
                f"The Omniglot archive downloaded from {url!r} has SHA-256 {found}, not the "
                f"expected {expected}: it is corrupt or not the official {name}, and was "
                "deleted. Check `origin`, or pass checksums= for the archives of a mirror."
            ) from error
        os.replace(fetched, target)
        archives.append(target)
    return archives
