"""Named training protocols of published few-shot results, as data.

A protocol pins every hyper-parameter of a published result: the episodes
(ways, shots, queries at training and at test), the meta-batch, the inner
loop, the meta-optimizer and its schedule, the budget, the model, the data
split and augmentation, the BatchNorm mode at test, and the number the paper
reports. `keras-meta train --protocol NAME` and `benchmarks/reproduce.py` run
them; any field can be overridden
(`keras_meta.experiments.RunConfig.from_protocol(name, **overrides)`), and the
resolved configuration is what a run directory's `config.json` holds.

This module also holds the choice lists of the configuration's fields, so
that the configuration, the command line and its documentation share them.
Where our implementation cannot follow a protocol exactly, the protocol's
`notes` say how it differs. (Over 400 lines: one entry of data per protocol.)

Example:

>>> PROTOCOLS["maml-omniglot-5w1s"]["inner_learning_rate"]
0.4
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from keras_meta.experiments.datasets import DATASETS, SPLITS
from keras_meta.learners.base import BN_MODES
from keras_meta.learners.protonet import DISTANCES
from keras_meta.learners.reptile import INNER_OPTIMIZERS
from keras_meta.models import POOLINGS

if TYPE_CHECKING:
    from keras_meta.experiments.config import RunConfig

ALGORITHMS = ("maml", "fomaml", "protonet", "reptile", "metasgd", "anil")
MODELS = ("conv4", "mlp")
AUGMENTATIONS = (None, "class_rotation", "rotations_as_classes")
OPTIMIZERS = ("adam", "sgd")
SCHEDULES = (None, "step", "linear")
CHECKPOINTS = ("final", "best")
COLOR_MODES = ("grayscale", "rgb")
EVAL_SPLITS = ("test", "validation")
__all__ = [
    "ALGORITHMS", "AUGMENTATIONS", "BN_MODES", "CHECKPOINTS", "COLOR_MODES", "DATASETS",
    "DISTANCES", "EVAL_SPLITS", "INNER_OPTIMIZERS", "MODELS", "OPTIMIZERS", "POOLINGS",
    "SCHEDULES", "SPLITS", "PROTOCOLS", "list_protocols", "get_protocol",
]  # fmt: skip

# MAML's code shuffles the 1623 Omniglot characters into 1100/100/423
# train/validation/test classes; every Omniglot protocol here uses the sizes.
MAML_SPLIT_SIZES = (1100, 100, 423)
# Default class split of the folder dataset (fractions of its classes), and
# the validation classes taken from Omniglot's background alphabets with
# split="official".
FOLDER_SPLIT_FRACTIONS = (0.6, 0.2, 0.2)
OFFICIAL_VALIDATION_CLASSES = 100


_MAML_OMNIGLOT = {
    "algorithm": "maml",
    "dataset": "omniglot",
    "queries": 1,  # MAML's code samples K query images per class, as the support.
    "meta_batch_size": 32,
    "inner_learning_rate": 0.4,
    "inner_steps": 1,
    "eval_inner_steps": 3,
    "optimizer": "adam",
    "meta_learning_rate": 1e-3,
    "iterations": 60000,
    "steps_per_epoch": 1000,
    "val_episodes": 100,
    "eval_episodes": 600,
    "checkpoint": "final",
    "model": "conv4",
    "filters": 64,
    # MAML uses stride-2 convolutions instead of max-pooling on Omniglot, a
    # mean over the last 2x2 map, and BatchNorm without a learned scale
    # (tf.contrib.layers.batch_norm's default).
    "pooling": "strided",
    "bn_scale": False,
    "image_size": 28,
    "split": "mixed",
    "split_sizes": MAML_SPLIT_SIZES,
    "augmentation": "class_rotation",
    "bn_mode": "transductive",
}

_PROTONET_OMNIGLOT = {
    "algorithm": "protonet",
    "dataset": "omniglot",
    "ways": 60,
    "queries": 5,
    "eval_ways": 5,
    "eval_queries": 15,
    "meta_batch_size": 1,
    "inner_learning_rate": None,
    "inner_steps": None,
    "optimizer": "adam",
    "meta_learning_rate": 1e-3,
    "lr_schedule": "step",
    "lr_decay_steps": 2000,
    "lr_decay_rate": 0.5,
    "iterations": 20000,
    "steps_per_epoch": 500,
    "val_episodes": 200,
    "eval_episodes": 1000,
    "checkpoint": "best",
    "model": "conv4",
    "filters": 64,
    "pooling": "max",
    "bn_scale": True,
    "image_size": 28,
    "split": "mixed",
    "split_sizes": MAML_SPLIT_SIZES,
    "augmentation": "rotations_as_classes",
    "bn_mode": "running",
    "distance": "euclidean",
}

_SNELL = "Snell et al. 2017, Prototypical Networks, Table 1"
_PROTONET_NOTES = (
    "Vinyals et al.'s split of 1200 training characters (with rotations as new "
    "classes) is replaced by a seeded random 1100/100/423 split of the 1623 "
    "characters (rotations of each split kept in that split). The paper trains "
    "with early stopping on validation loss (patience 200 epochs of 100 "
    "episodes) and reports the mean over 1000 test episodes without an "
    "interval; we train a fixed 20000 episodes (the learning rate is halved "
    "every 2000, so it is 1/1024 of the start by then) and evaluate the best "
    "validation checkpoint."
)

_REPTILE = "Nichol et al. 2018, On First-Order Meta-Learning Algorithms, Table 1"

_NO_IMAGENET = (
    " Not run in this project (no ImageNet here): the protocol is the paper's settings, "
    "untested against its number."
)
_MINI_IMAGENET = {
    "dataset": "mini_imagenet",
    "image_size": 84,
    "color_mode": "rgb",
    "split": "benchmark",
    "split_sizes": None,
    "augmentation": None,
    "model": "conv4",
    "pooling": "max",
}

_MAML_MINI_IMAGENET = {
    **_MAML_OMNIGLOT,
    **_MINI_IMAGENET,
    "queries": 15,  # 15 query images per class in training (MAML paper, sec. 5.2).
    "inner_learning_rate": 0.01,
    "inner_steps": 5,
    "eval_inner_steps": 10,
    # 32 filters "to reduce overfitting" (MAML paper); BatchNorm without a
    # learned scale, normalising with the batch at test, as on Omniglot.
    "filters": 32,
    "bn_scale": False,
}
_MAML_MINI_NOTES = (
    "Ravi & Larochelle's 64/16/20-class split (km.data.mini_imagenet), images read from "
    "the ImageNet train folder and resized to 84x84 per episode (MAML's "
    "data/miniImagenet/proc_images.py resizes the files once). Training: 15 queries per "
    "class, 5 inner steps of 0.01, second-order meta-gradient. Test: 10 inner steps on "
    "600 tasks with as many queries per class as shots, as MAML's main.py tests "
    "(update_batch_size*2 images per class), which matters with transductive BatchNorm."
)

_PROTONET_MINI_IMAGENET = {
    **_PROTONET_OMNIGLOT,
    **_MINI_IMAGENET,
    "queries": 15,
    "eval_episodes": 600,
}
_SNELL_MINI = "Snell et al. 2017, Prototypical Networks, Table 2"
_PROTONET_MINI_NOTES = (
    "Ravi & Larochelle's 64/16/20-class split (km.data.mini_imagenet), 84x84 images read "
    "from the ImageNet train folder. Adam 1e-3 halved every 2000 episodes, 15 queries "
    "per class in training and test, 600 test episodes with a 95% interval, as the "
    "paper. The paper trains until the validation loss stops improving; we train a fixed "
    "20000 episodes and evaluate the best validation checkpoint."
)

PROTOCOLS: dict[str, dict] = {
    "maml-sinusoid": {
        "description": "MAML, sinusoid regression, K=10 (Finn et al. 2017, sec. 5.1)",
        "algorithm": "maml",
        "dataset": "sinusoid",
        "ways": 1,
        "shots": 10,
        "queries": 10,
        "eval_queries": 100,
        "meta_batch_size": 25,
        "inner_learning_rate": 0.01,
        "inner_steps": 1,
        "eval_inner_steps": 1,
        "optimizer": "adam",
        "meta_learning_rate": 1e-3,
        "iterations": 70000,
        "steps_per_epoch": 1000,
        "val_episodes": 100,
        "eval_episodes": 600,
        "model": "mlp",
        "hidden_units": [40, 40],
        "split": "none",
        "bn_mode": "running",
        "published": {
            "metric": "loss",
            "value": 0.77,
            "ci95": 0.11,
            "unit": "MSE",
            "source": "Li et al. 2017, Meta-SGD, Table 1 (MAML, 10-shot)",
        },
        "notes": (
            "The MAML paper shows sinusoid results as figures only; the number is "
            "MAML's 10-shot MSE as reported by Meta-SGD with the same task "
            "family (A in [0.1, 5], phase in [0, pi], x in [-5, 5]). The test "
            "query set has 100 points per task (any size estimates the same MSE)."
        ),
    },
    "maml-omniglot-5w1s": {
        **_MAML_OMNIGLOT,
        "description": "MAML, Omniglot 5-way 1-shot (Finn et al. 2017)",
        "ways": 5,
        "shots": 1,
        "queries": 1,
        "published": {
            "metric": "accuracy",
            "value": 0.987,
            "ci95": 0.004,
            "source": "Finn et al. 2017, MAML, Table 1",
        },
        "notes": (
            "Split: MAML's code shuffles the 1623 characters and takes "
            "1100/100/423 for train/validation/test; ours uses the same sizes "
            "with a different (seeded) shuffle. Each class of an episode is "
            "rotated by a random multiple of 90 degrees. Test episodes have 1 "
            "query per class, as in MAML's code (which matters with "
            "transductive BatchNorm)."
        ),
    },
    "maml-omniglot-5w5s": {
        **_MAML_OMNIGLOT,
        "description": "MAML, Omniglot 5-way 5-shot (Finn et al. 2017)",
        "ways": 5,
        "shots": 5,
        "queries": 5,
        "published": {
            "metric": "accuracy",
            "value": 0.999,
            "ci95": 0.001,
            "source": "Finn et al. 2017, MAML, Table 1",
        },
        "notes": "As maml-omniglot-5w1s, with 5 shots and 5 queries per class.",
    },
    "maml-omniglot-20w1s": {
        **_MAML_OMNIGLOT,
        "description": "MAML, Omniglot 20-way 1-shot (Finn et al. 2017)",
        "ways": 20,
        "shots": 1,
        "queries": 1,
        "meta_batch_size": 16,
        "inner_learning_rate": 0.1,
        "inner_steps": 5,
        "eval_inner_steps": 5,
        "published": {
            "metric": "accuracy",
            "value": 0.958,
            "ci95": 0.003,
            "source": "Finn et al. 2017, MAML, Table 1",
        },
        "notes": (
            "20-way: 5 inner steps of 0.1 in training and test, 16 tasks per "
            "meta-batch (MAML paper, sec. 5.2). Split as maml-omniglot-5w1s."
        ),
    },
    "fomaml-omniglot-5w1s": {
        **_MAML_OMNIGLOT,
        "description": "First-order MAML, Omniglot 5-way 1-shot",
        "algorithm": "fomaml",
        "ways": 5,
        "shots": 1,
        "queries": 1,
        "published": {
            "metric": "accuracy",
            "value": 0.983,
            "ci95": 0.005,
            "source": _REPTILE + " ('1st-order MAML + Transduction')",
        },
        "notes": "MAML's protocol with the first-order meta-gradient.",
    },
    "metasgd-omniglot-5w1s": {
        **_MAML_OMNIGLOT,
        "description": "Meta-SGD, Omniglot 5-way 1-shot (Li et al. 2017)",
        "algorithm": "metasgd",
        "ways": 5,
        "shots": 1,
        "queries": 1,
        "inner_learning_rate": 0.4,
        "inner_steps": 1,
        "eval_inner_steps": 1,
        "published": {
            "metric": "accuracy",
            "value": 0.9953,
            "ci95": 0.0026,
            "source": "Li et al. 2017, Meta-SGD, Table 2",
        },
        "notes": (
            "Meta-SGD learns per-weight inner rates and adapts in one step. The "
            "paper initialises the rates uniformly in [0.005, 0.1] and does "
            "not state every hyper-parameter; we start all rates at 0.4 and "
            "otherwise follow MAML's Omniglot protocol."
        ),
    },
    "anil-omniglot-20w1s": {
        **_MAML_OMNIGLOT,
        "description": "ANIL, Omniglot 20-way 1-shot (Raghu et al. 2020)",
        "algorithm": "anil",
        "ways": 20,
        "shots": 1,
        "queries": 1,
        "meta_batch_size": 16,
        "inner_learning_rate": 0.1,
        "inner_steps": 5,
        "eval_inner_steps": 5,
        "published": {
            "metric": "accuracy",
            "value": 0.962,
            "ci95": 0.005,
            "source": "Raghu et al. 2020, Rapid Learning or Feature Reuse?, Table 2",
        },
        "notes": (
            "Only the final dense layer adapts in the inner loop; otherwise MAML's 20-way protocol."
        ),
    },
    "reptile-omniglot-5w1s": {
        "description": "Reptile, Omniglot 5-way 1-shot, transductive (Nichol et al. 2018)",
        "algorithm": "reptile",
        "dataset": "omniglot",
        "ways": 5,
        # Reptile trains on 10 shots per class and tests on 1.
        "shots": 10,
        "queries": 1,
        "eval_shots": 1,
        "eval_queries": 1,
        "meta_batch_size": 5,
        "inner_optimizer": "adam",
        "inner_learning_rate": 0.001,
        "inner_batch_size": 10,
        "inner_steps": 5,
        "eval_inner_steps": 50,
        "optimizer": "sgd",
        "meta_learning_rate": 1.0,
        "lr_schedule": "linear",
        "iterations": 100000,
        "steps_per_epoch": 1000,
        "val_episodes": 100,
        "eval_episodes": 600,
        "checkpoint": "final",
        "model": "conv4",
        "filters": 64,
        "pooling": "strided",
        "bn_scale": True,
        "image_size": 28,
        "split": "mixed",
        "split_sizes": MAML_SPLIT_SIZES,
        "augmentation": "rotations_as_classes",
        "bn_mode": "transductive",
        "published": {
            "metric": "accuracy",
            "value": 0.9768,
            "ci95": 0.0004,
            "source": _REPTILE + " ('Reptile + Transduction')",
        },
        "notes": (
            "As run_omniglot.py of the Reptile code for 5-way 1-shot "
            "transductive: 10 training shots, inner Adam (lr 0.001, beta1 0) "
            "for 5 steps on mini-batches of 10, outer SGD step 1.0 linearly "
            "annealed to 0 over 100000 iterations, meta-batch 5, 50 inner "
            "steps at test. Differences: the inner Adam moments are fresh "
            "for every episode (the reference keeps them across tasks), the "
            "test mini-batches are of 10 drawn from the 5 support images "
            "(the reference: 5, the whole support set, the same gradient), "
            "and the split is a seeded 1100/100/423 split of the 1623 "
            "characters with rotations as new classes."
        ),
    },
    "protonet-omniglot-5w1s": {
        **_PROTONET_OMNIGLOT,
        "description": "Prototypical Networks, Omniglot 5-way 1-shot (Snell et al. 2017)",
        "shots": 1,
        "published": {"metric": "accuracy", "value": 0.988, "ci95": None, "source": _SNELL},
        "notes": _PROTONET_NOTES + " Trained 60-way 1-shot with 5 queries per class.",
    },
    "protonet-omniglot-5w5s": {
        **_PROTONET_OMNIGLOT,
        "description": "Prototypical Networks, Omniglot 5-way 5-shot (Snell et al. 2017)",
        "shots": 5,
        "published": {"metric": "accuracy", "value": 0.997, "ci95": None, "source": _SNELL},
        "notes": _PROTONET_NOTES + " Trained 60-way 5-shot with 5 queries per class.",
    },
    "protonet-omniglot-20w1s": {
        **_PROTONET_OMNIGLOT,
        "description": "Prototypical Networks, Omniglot 20-way 1-shot (Snell et al. 2017)",
        "shots": 1,
        "eval_ways": 20,
        "published": {"metric": "accuracy", "value": 0.960, "ci95": None, "source": _SNELL},
        "notes": _PROTONET_NOTES + " Trained 60-way 1-shot with 5 queries per class.",
    },
    "maml-miniimagenet-5w1s": {
        **_MAML_MINI_IMAGENET,
        "description": "MAML, mini-ImageNet 5-way 1-shot (Finn et al. 2017)",
        "ways": 5,
        "shots": 1,
        "eval_queries": 1,
        "meta_batch_size": 4,
        "published": {
            "metric": "accuracy",
            "value": 0.4870,
            "ci95": 0.0184,
            "source": "Finn et al. 2017, MAML, Table 2",
        },
        "notes": _MAML_MINI_NOTES + " Meta-batch of 4 tasks." + _NO_IMAGENET,
    },
    "maml-miniimagenet-5w5s": {
        **_MAML_MINI_IMAGENET,
        "description": "MAML, mini-ImageNet 5-way 5-shot (Finn et al. 2017)",
        "ways": 5,
        "shots": 5,
        "eval_queries": 5,
        "meta_batch_size": 2,
        "published": {
            "metric": "accuracy",
            "value": 0.6311,
            "ci95": 0.0092,
            "source": "Finn et al. 2017, MAML, Table 2",
        },
        "notes": (
            _MAML_MINI_NOTES + " Meta-batch of 2 tasks, as the paper says for 5-shot (the "
            "usage line of MAML's main.py gives 4)." + _NO_IMAGENET
        ),
    },
    "protonet-miniimagenet-5w1s": {
        **_PROTONET_MINI_IMAGENET,
        "description": "Prototypical Networks, mini-ImageNet 5-way 1-shot (Snell et al. 2017)",
        "ways": 30,
        "shots": 1,
        "published": {
            "metric": "accuracy", "value": 0.4942, "ci95": 0.0078, "source": _SNELL_MINI,
        },
        "notes": _PROTONET_MINI_NOTES + " Trained 30-way 1-shot." + _NO_IMAGENET,
    },
    "protonet-miniimagenet-5w5s": {
        **_PROTONET_MINI_IMAGENET,
        "description": "Prototypical Networks, mini-ImageNet 5-way 5-shot (Snell et al. 2017)",
        "ways": 20,
        "shots": 5,
        "published": {
            "metric": "accuracy", "value": 0.6820, "ci95": 0.0066, "source": _SNELL_MINI,
        },
        "notes": _PROTONET_MINI_NOTES + " Trained 20-way 5-shot." + _NO_IMAGENET,
    },
}


def list_protocols() -> list[str]:
    """The names of the protocols.

    Example:

    >>> "maml-omniglot-5w1s" in list_protocols()
    True
    """
    return sorted(PROTOCOLS)


def get_protocol(name: str) -> RunConfig:
    """The full, validated configuration of protocol `name`.

    Example:

    >>> get_protocol("maml-omniglot-5w1s").inner_learning_rate
    0.4
    """
    from keras_meta.experiments.config import RunConfig

    return RunConfig.from_protocol(name)
