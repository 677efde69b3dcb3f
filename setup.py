"""keras_meta: meta-learning for Keras 3."""

from setuptools import find_packages, setup

setup(
    name="keras_meta",
    version="0.1.0",
    description=(
        "Meta-learning for Keras 3: MAML, Reptile, Meta-SGD, ANIL, ProtoNets "
        "as keras.Model subclasses trained with fit and exported as SavedModel."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    packages=find_packages(include=["keras_meta", "keras_meta.*"]),
    # Class lists of the standard few-shot splits ship as data files.
    # So do the pretrained learners (weights only, and their metadata).
    package_data={
        # `git archive` writes the commit into it (.gitattributes).
        "keras_meta": ["_commit.txt"],
        "keras_meta.data": ["class_lists/*.txt"],
        "keras_meta.pretrained": ["*/metadata.json", "*/model.weights.h5"],
    },
    python_requires=">=3.10",
    install_requires=[
        "keras>=3.3",
        "numpy",
        "pillow",
        "tensorflow-datasets>=4.9",
        "matplotlib",
        # TF >= 2.20 no longer installs it; keras.callbacks.TensorBoard needs it.
        "tensorboard",
    ],
    extras_require={
        "cpu": ["tensorflow-cpu>=2.16"],
        "gpu": ["tensorflow[and-cuda]>=2.16"],
        # Weights & Biases logging (`keras-meta train --wandb`), never required.
        "wandb": ["wandb"],
        # scikit-learn's digits are the real cross-domain target of the tests
        # and of examples/cross_domain.py.
        "test": [
            "pytest>=7", "pytest-timeout", "pytest-xdist", "ruff", "scikit-learn", "wandb",
        ],
    },
    entry_points={"console_scripts": ["keras-meta=keras_meta.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
