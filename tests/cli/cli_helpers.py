"""Helpers of the command-line tests: a tiny image dataset, the arguments of a
small training run, and the check of a one-line error."""

import numpy as np
from PIL import Image

from keras_meta.cli import main


def _make_image_folder(root, num_classes, per_class, seed):
    """Class-specific 7x7 block patterns upsampled to 28x28, plus noise."""
    rng = np.random.default_rng(seed)
    for c in range(num_classes):
        folder = root / f"class_{c:02d}"
        folder.mkdir(parents=True)
        pattern = np.kron(rng.random((7, 7)) > 0.5, np.ones((4, 4)))
        for i in range(per_class):
            image = np.clip(pattern + 0.3 * rng.standard_normal((28, 28)), 0, 1)
            Image.fromarray((255 * image).astype(np.uint8), "L").save(folder / f"{i}.png")
    return root


def _train_args(data, out, *extra):
    return [
        "train",
        "--algorithm",
        "maml",
        "--dataset",
        "folder",
        "--data-dir",
        str(data),
        "--split",
        "random",
        "--ways",
        "3",
        "--shots",
        "1",
        "--queries",
        "2",
        "--meta-batch-size",
        "2",
        "--iterations",
        "6",
        "--steps-per-epoch",
        "2",
        "--val-episodes",
        "4",
        "--eval-episodes",
        "10",
        "--filters",
        "8",
        "--inner-lr",
        "0.4",
        # A seed whose validation accuracy peaks at the second of the three
        # epochs, so that the choice of best.keras after a resume is tested.
        "--seed",
        "2",
        "--out",
        str(out),
        "--verbose",
        "0",
        *extra,
    ]


def _sinusoid_args(out, *extra, iterations=4):
    """`keras-meta train` of a small sinusoid MAML into `out` (2 steps per epoch)."""
    return [
        "train", "--protocol", "maml-sinusoid", "--iterations", str(iterations),
        "--steps-per-epoch", "2", "--val-episodes", "2", "--meta-batch-size", "2",
        "--hidden-units", "8,8", "--out", str(out), "--verbose", "0", *extra,
    ]  # fmt: skip


def _error(capsys, argv):
    """Runs the CLI expecting a usage error; returns the error line."""
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's parser.error
        code = exit_.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    return err.splitlines()[-1]


