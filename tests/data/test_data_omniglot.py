"""Omniglot loading: official layout from zips and folders, caching, errors, real data."""

import hashlib
import os
import pathlib
import shutil
import zipfile

import numpy as np
import pytest
from PIL import Image

import keras_meta as km

ALPHABETS = {"Latin": 3, "Greek": 2}  # unsorted on purpose: classes follow sorted names
DRAWINGS = 3


def character_image(alphabet_index, character_index, drawing):
    """105x105 1-bit, black ink on white; the ink square's place identifies the class."""
    image = Image.new("1", (105, 105), 1)
    top = 12 + 25 * character_index
    left = 12 + 40 * alphabet_index + drawing
    for r in range(top, top + 20):
        for c in range(left, left + 20):
            image.putpixel((c, r), 0)
    return image


def write_split(root, split, alphabets=ALPHABETS):
    folder = root / f"images_{split}"
    file_id = 1
    for a, (alphabet, count) in enumerate(sorted(alphabets.items())):
        for c in range(count):
            char_dir = folder / alphabet / f"character{c + 1:02d}"
            char_dir.mkdir(parents=True)
            for d in range(DRAWINGS):
                character_image(a, c, d).save(char_dir / f"{file_id:04d}_{d + 1:02d}.png")
            file_id += 1
    return folder


def zip_folder(folder, archive):
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted(folder.rglob("*")):
            z.write(path, path.relative_to(folder.parent).as_posix())
    return archive


@pytest.fixture
def fixture_dirs(tmp_path):
    """(folder form, zip form, cache dir) of a tiny official-layout Omniglot."""
    folders = tmp_path / "folders"
    zips = tmp_path / "zips"
    zips.mkdir()
    for split in ("background", "evaluation"):
        alphabets = ALPHABETS if split == "background" else {"Korean": 2}
        folder = write_split(folders, split, alphabets)
        zip_folder(folder, zips / f"images_{split}.zip")
    return folders, zips, tmp_path / "cache"


def test_folder_and_zip_forms_agree(fixture_dirs):
    folders, zips, cache = fixture_dirs
    xf, yf, info = km.data.omniglot(folders, image_size=28, with_info=True, cache=False)
    xz, yz = km.data.omniglot(zips, image_size=28, cache_dir=cache)
    np.testing.assert_array_equal(xf, xz)
    np.testing.assert_array_equal(yf, yz)
    assert xf.shape == (5 * DRAWINGS, 28, 28, 1) and xf.dtype == np.float32
    assert yf.tolist() == np.repeat(np.arange(5), DRAWINGS).tolist()
    # Sorted alphabets, then characters.
    assert info["alphabet"].tolist() == ["Greek", "Greek", "Latin", "Latin", "Latin"]
    assert info["character"].tolist()[:3] == ["character01", "character02", "character01"]
    assert set(info["split"].tolist()) == {"background"}


def test_ink_is_one_and_antialiased(fixture_dirs):
    folders, _, _ = fixture_dirs
    x, y = km.data.omniglot(folders, image_size=21, cache=False)
    assert x.min() >= 0.0 and x.max() <= 1.0
    # Class 2 = Latin/character01, drawing 1: ink at rows 12..31, cols 52..71 of 105,
    # i.e. rows 2.4..6.4 and cols 10.4..14.4 after the 5x reduction.
    image = x[y == 2][0, ..., 0]
    assert image[3, 12] == pytest.approx(1.0, abs=0.05)  # inside the stroke
    assert image[15, 15] == pytest.approx(0.0, abs=0.05)  # background
    assert 0.2 < image[2, 12] < 0.9  # a partly covered pixel is grey: anti-aliased
    full, _ = km.data.omniglot(folders, image_size=None, cache=False)
    assert full.shape[1:] == (105, 105, 1)
    assert set(np.unique(full).tolist()) == {0.0, 1.0}


def test_direct_zip_and_split_folder_paths(fixture_dirs):
    folders, zips, cache = fixture_dirs
    reference, labels = km.data.omniglot(zips, split="evaluation", cache=False)
    x, y = km.data.omniglot(zips / "images_evaluation.zip", split="evaluation", cache=False)
    np.testing.assert_array_equal(x, reference)
    x, _ = km.data.omniglot(folders / "images_evaluation", split="evaluation", cache=False)
    np.testing.assert_array_equal(x, reference)
    assert labels.max() == 1


def test_all_split_concatenates(fixture_dirs):
    _, zips, cache = fixture_dirs
    x, y, info = km.data.omniglot(zips, split="all", with_info=True, cache_dir=cache)
    assert y.max() + 1 == 7 and len(info["alphabet"]) == 7
    assert info["split"].tolist() == ["background"] * 5 + ["evaluation"] * 2
    assert info["alphabet"][-1] == "Korean"


def test_cache_is_used_and_keyed_on_the_source(fixture_dirs, tmp_path):
    _, zips, cache = fixture_dirs
    before = sorted(os.listdir(zips))
    x1, y1 = km.data.omniglot(zips, image_size=14, cache_dir=cache)
    files = os.listdir(cache)
    assert len(files) == 1 and files[0].endswith(".npz")
    assert sorted(os.listdir(zips)) == before  # nothing written next to the data
    with np.load(cache / files[0], allow_pickle=False) as cached:
        assert cached["images"].dtype == np.uint8
    x2, y2 = km.data.omniglot(zips, image_size=14, cache_dir=cache)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    # Another size is another entry; a changed archive is another entry.
    km.data.omniglot(zips, image_size=7, cache_dir=cache)
    assert len(os.listdir(cache)) == 2
    other = tmp_path / "other"
    write_split(other, "background", {"Braille": 1})
    zip_folder(other / "images_background", zips / "images_background.zip")
    x3, _ = km.data.omniglot(zips, image_size=14, cache_dir=cache)
    assert len(x3) == DRAWINGS


def test_read_only_data_and_unwritable_cache(fixture_dirs, tmp_path):
    _, zips, _ = fixture_dirs
    os.chmod(zips, 0o555)
    try:
        not_a_dir = tmp_path / "cache_is_a_file"
        not_a_dir.write_text("")
        with pytest.warns(UserWarning, match=r"Could not write the Omniglot cache"):
            x, _ = km.data.omniglot(zips, cache_dir=not_a_dir / "sub")
        assert len(x) == 5 * DRAWINGS
    finally:
        os.chmod(zips, 0o755)


def test_broken_cache_is_rebuilt(fixture_dirs):
    _, zips, cache = fixture_dirs
    x, _ = km.data.omniglot(zips, cache_dir=cache)
    (entry,) = list(cache.iterdir())
    entry.write_bytes(b"not an npz")
    with pytest.warns(UserWarning, match=r"Ignoring the unreadable Omniglot cache"):
        again, _ = km.data.omniglot(zips, cache_dir=cache)
    np.testing.assert_array_equal(x, again)


def test_error_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"does not exist.*images_background.zip"):
        km.data.omniglot(tmp_path / "nowhere")


def test_error_not_the_official_layout(tmp_path):
    (tmp_path / "something_else").mkdir()
    (tmp_path / "readme.txt").write_text("hi")
    with pytest.raises(FileNotFoundError, match=r"background split.*images_background.zip"):
        km.data.omniglot(tmp_path)
    flat = tmp_path / "flat.zip"
    with zipfile.ZipFile(flat, "w") as z:
        z.writestr("images_background/0001_01.png", b"")
    with pytest.raises(ValueError, match=r"Unexpected image path.*0001_01.png.*<Alphabet>"):
        km.data.omniglot(flat, cache=False)
    empty = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty, "w") as z:
        z.writestr("images_background/readme.txt", b"")
    with pytest.raises(ValueError, match=r"No PNG images found"):
        km.data.omniglot(empty, cache=False)
    with pytest.raises(ValueError, match=r"not a zip archive"):
        km.data.omniglot(tmp_path / "readme.txt")


def test_error_corrupt_image_is_named(fixture_dirs):
    folders, _, _ = fixture_dirs
    bad = next((folders / "images_background" / "Latin" / "character02").iterdir())
    bad.write_bytes(b"\x89PNG garbage")
    with pytest.raises(ValueError, match=rf"Could not decode the image .*{bad.name}"):
        km.data.omniglot(folders, cache=False)


def test_error_wrong_split_arguments(fixture_dirs):
    folders, zips, _ = fixture_dirs
    with pytest.raises(ValueError, match=r"`split` must be one of \['background'.*'train'"):
        km.data.omniglot(zips, split="train")
    with pytest.raises(ValueError, match=r"holds the 'evaluation' split.*'background'"):
        km.data.omniglot(zips / "images_evaluation.zip", split="background")
    with pytest.raises(ValueError, match=r"split='all' needs the folder holding both"):
        km.data.omniglot(zips / "images_evaluation.zip", split="all")
    shutil.rmtree(folders / "images_evaluation")
    with pytest.raises(FileNotFoundError, match=r"evaluation split"):
        km.data.omniglot(folders, split="all", cache=False)


def test_real_omniglot(omniglot_dir, tmp_path):
    """The official archives, decoded into a fresh cache and read back from it.

    How long decoding takes is measured by benchmarks/episodes.py, not here.
    """
    cache = tmp_path / "cache"
    background = km.data.omniglot(omniglot_dir, "background", with_info=True, cache_dir=cache)
    evaluation = km.data.omniglot(omniglot_dir, "evaluation", with_info=True, cache_dir=cache)
    for (x, y, info), classes, alphabets in ((background, 964, 30), (evaluation, 659, 20)):
        assert x.shape == (classes * 20, 28, 28, 1) and x.dtype == np.float32
        assert np.bincount(y).tolist() == [20] * classes
        assert len(set(info["alphabet"].tolist())) == alphabets
        assert 0.03 < x.mean() < 0.2  # ink = 1 on a 0 background
    assert background[2]["alphabet"][0] == "Alphabet_of_the_Magi"
    # The cache went to cache_dir (not the user's home), one entry per split,
    # and gives back the same arrays.
    assert len(list(cache.glob("*.npz"))) == 2
    x, y = km.data.omniglot(omniglot_dir, "evaluation", cache_dir=cache)
    np.testing.assert_array_equal(x, evaluation[0])
    np.testing.assert_array_equal(y, evaluation[1])


def test_uint8_images_are_the_float32_images_in_a_quarter_of_the_memory(fixture_dirs):
    _, zips, cache = fixture_dirs
    x, y = km.data.omniglot(zips, image_size=21, cache_dir=cache)
    u, yu = km.data.omniglot(zips, image_size=21, cache_dir=cache, dtype="uint8")
    assert u.dtype == np.uint8 and u.shape == x.shape and u.nbytes * 4 == x.nbytes
    np.testing.assert_array_equal(yu, y)
    # Bit for bit: the float32 images are the uint8 ones divided by 255.
    np.testing.assert_array_equal((u / np.float32(255)).view(np.uint32), x.view(np.uint32))
    # Episodes from the uint8 images (scale=255) are the float32 images' episodes.
    a = km.data.episodes(x, y, 3, 1, 2, seed=0).take(3)
    b = km.data.episodes(u, y, 3, 1, 2, seed=0, scale=255).take(3)
    for (ea, qa), (eb, qb) in zip(a.as_numpy_iterator(), b.as_numpy_iterator(), strict=True):
        for key in ea:
            np.testing.assert_array_equal(ea[key], eb[key])
        np.testing.assert_array_equal(qa, qb)
    with pytest.raises(ValueError, match=r"`dtype` must be one of.*received dtype='uint16'"):
        km.data.omniglot(zips, dtype="uint16")


# Download: from a file:// origin (no network here), checked against SHA-256 digests.


def sha256(path):
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def test_download_from_a_file_origin_then_load(fixture_dirs, tmp_path):
    _, mirror, cache = fixture_dirs
    checksums = {p.name: sha256(p) for p in mirror.glob("*.zip")}
    target = tmp_path / "fetched" / "omniglot"
    x, y, info = km.data.omniglot(
        target, "all", with_info=True, cache=False,
        download=True, origin=mirror.as_uri(), checksums=checksums,
    )
    # The archives were copied byte for byte, and nothing else was left behind.
    assert sorted(p.name for p in target.iterdir()) == sorted(checksums)
    for name in checksums:
        assert (target / name).read_bytes() == (mirror / name).read_bytes()
    # Loading them is loading the origin's archives.
    xr, yr, info_r = km.data.omniglot(mirror, "all", with_info=True, cache=False)
    np.testing.assert_array_equal(x, xr)
    np.testing.assert_array_equal(y, yr)
    assert info["split"].tolist() == info_r["split"].tolist()
    # Present archives are not fetched again: the origin may be gone.
    gone = (tmp_path / "gone").as_uri()
    km.data.omniglot(target, "all", cache_dir=cache, download=True, origin=gone)
    assert km.data.download_omniglot(target, origin=gone, checksums=checksums) == [
        str(target / "images_background.zip"),
        str(target / "images_evaluation.zip"),
    ]


def test_download_fetches_only_the_missing_split(fixture_dirs, tmp_path):
    folders, mirror, _ = fixture_dirs
    checksums = {p.name: sha256(p) for p in mirror.glob("*.zip")}
    target = tmp_path / "partial"
    shutil.copytree(folders / "images_background", target / "images_background")
    km.data.omniglot(
        target, "all", cache=False, download=True, origin=mirror.as_uri(), checksums=checksums
    )
    assert sorted(p.name for p in target.iterdir()) == [
        "images_background",
        "images_evaluation.zip",
    ]


def test_download_with_a_wrong_checksum_is_a_clear_error_and_leaves_nothing(
    fixture_dirs, tmp_path
):
    _, mirror, _ = fixture_dirs
    checksums = {p.name: sha256(p) for p in mirror.glob("*.zip")}
    checksums["images_evaluation.zip"] = "0" * 64
    target = tmp_path / "omniglot"
    found = sha256(mirror / "images_evaluation.zip")
    with pytest.raises(ValueError, match=f"has SHA-256 {found}, not the expected {'0' * 64}"):
        km.data.omniglot(
            target, "evaluation", download=True, origin=mirror.as_uri(), checksums=checksums
        )
    assert list(target.iterdir()) == []
    # Without download, the missing archive is the usual error, which suggests download.
    with pytest.raises(FileNotFoundError, match="download=True"):
        km.data.omniglot(target, "evaluation")
    # An archive already there with another digest is an error, and is left alone.
    shutil.copy(mirror / "images_background.zip", target / "images_evaluation.zip")
    with pytest.raises(ValueError, match="already there but its SHA-256 is"):
        km.data.download_omniglot(target, "evaluation", mirror.as_uri(), checksums)
    assert sha256(target / "images_evaluation.zip") == sha256(mirror / "images_background.zip")


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"split": "train"}, ValueError, "split"),
        ({"origin": None}, TypeError, "origin"),
        ({"checksums": ["abc"]}, TypeError, "checksums"),
        ({"checksums": {"images_background.zip": "ab"}}, ValueError, "64 hex digits.*'ab'"),
        # Checked before anything is fetched: no download of the background archive.
        ({"checksums": {"images_background.zip": "0" * 64}}, ValueError, "'images_evaluation"),
    ],
)
def test_download_bad_arguments(tmp_path, kwargs, error, match):
    with pytest.raises(error, match=match):
        km.data.download_omniglot(tmp_path / "o", **kwargs)
    with pytest.raises(TypeError, match="download"):
        km.data.omniglot(tmp_path, download="yes")


def test_pinned_origin_and_digests_are_those_tfds_pins():
    """TFDS's omniglot builder pins the same official archives (URL, SHA-256)."""
    tfds = pytest.importorskip("tensorflow_datasets")
    table = pathlib.Path(tfds.__file__).parent / "url_checksums" / "omniglot.txt"
    pinned = {}
    for line in table.read_text().splitlines():
        url, _, digest, *_ = line.split("\t")
        pinned[url] = digest
    for name, digest in km.data.OMNIGLOT_SHA256.items():
        assert pinned[km.data.OMNIGLOT_ORIGIN + name] == digest


def test_real_archives_download_from_a_file_origin(omniglot_dir, tmp_path):
    """The real archives through the whole download path (the copies here are re-packed,
    so their digests are not the official ones: the pins of a mirror are passed)."""
    checksums = {n: sha256(omniglot_dir / n) for n in km.data.OMNIGLOT_SHA256}
    paths = km.data.download_omniglot(tmp_path, "all", omniglot_dir.as_uri(), checksums)
    for path in paths:
        assert sha256(path) == checksums[pathlib.Path(path).name]
    with zipfile.ZipFile(paths[1]) as archive:
        assert sum(n.endswith(".png") for n in archive.namelist()) == 13180
