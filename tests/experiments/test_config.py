"""RunConfig: validation on construction, the JSON round trip, old config.json
files, and the answers it gives in place of the raw dict."""

import json

import pytest

from keras_meta.experiments import RunConfig, protocols
from keras_meta.experiments.config import FIELD_NAMES, RUN_OPTION_FIELDS

# The `config` of a config.json written by keras_meta 0.1.0 (keras_meta.presets),
# for the maml-omniglot-5w1s preset, as it was on disk.
OLD_CONFIG_JSON = """{"name": "maml-omniglot-5w1s", "description": "MAML, Omniglot 5-way 1-shot
 (Finn et al. 2017)", "algorithm": "maml", "dataset": "omniglot", "data_dir":
 "/data/omniglot", "ways": 5, "shots": 1, "queries": 1, "eval_ways": null, "eval_shots":
 null, "eval_queries": null, "meta_batch_size": 32, "inner_learning_rate": 0.4,
 "inner_steps": 1, "eval_inner_steps": 3, "inner_optimizer": "sgd", "inner_batch_size":
 null, "optimizer": "adam", "meta_learning_rate": 0.001, "lr_schedule": null,
 "lr_decay_steps": null, "lr_decay_rate": null, "iterations": 60000, "steps_per_epoch":
 1000, "val_episodes": 100, "eval_episodes": 600, "checkpoint": "final", "model":
 "conv4", "filters": 64, "pooling": "strided", "bn_scale": false, "hidden_units": [40,
 40], "distance": "euclidean", "image_size": 28, "color_mode": "grayscale", "invert":
 false, "split": "mixed", "split_sizes": [1100, 100, 423], "split_seed": 0,
 "augmentation": "class_rotation", "bn_mode": "transductive", "seed": 0, "published":
 {"metric": "accuracy", "value": 0.987, "ci95": 0.004, "source": "Finn et al. 2017,
 MAML, Table 1"}, "notes": "x"}""".replace("\n", "")


def test_old_config_json_reads_and_round_trips():
    stored = json.loads(OLD_CONFIG_JSON)
    config = RunConfig.from_dict(stored)
    assert config.split_sizes == (1100, 100, 423) and config.pooling == "strided"
    # Written back, it is the same JSON object (tuples become lists again).
    assert config.to_dict() == stored
    assert list(config.to_dict()) == list(stored)
    assert RunConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    # It is the protocol, with the data directory of that run.
    protocol = protocols.get_protocol("maml-omniglot-5w1s")
    assert config.override(notes=protocol.notes) == protocol.override(data_dir="/data/omniglot")


def test_every_protocol_round_trips():
    for name in protocols.list_protocols():
        config = protocols.get_protocol(name)
        assert RunConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_integer_rates_become_floats_and_defaults_fill_in():
    config = RunConfig.from_dict({"meta_learning_rate": 1, "inner_learning_rate": 2})
    assert config.meta_learning_rate == 1.0 and isinstance(config.meta_learning_rate, float)
    assert isinstance(config.inner_learning_rate, float)
    # The run options at their defaults are left out of the dict (config.py).
    assert config.ways == 5 and set(config.to_dict()) == set(FIELD_NAMES) - set(RUN_OPTION_FIELDS)


@pytest.mark.parametrize(
    "fields, error, message",
    [
        ({"ways": 0}, ValueError, "`ways` must be an integer >= 1; received ways=0"),
        ({"ways": True}, TypeError, "`ways` must be an integer >= 1; received True"),
        ({"shots": 1.5}, TypeError, "`shots` must be an integer >= 1; received 1.5"),
        ({"meta_learning_rate": 0.0}, ValueError, "`meta_learning_rate` must be a finite"),
        ({"meta_learning_rate": float("inf")}, ValueError, "meta_learning_rate=inf"),
        ({"algorithm": "mamal"}, ValueError, "`algorithm` must be one of"),
        ({"bn_scale": 1}, TypeError, "`bn_scale` must be a bool; received 1"),
        ({"data_dir": 3}, TypeError, "`data_dir` must be of type str; received 3"),
        ({"hidden_units": [40, 0]}, ValueError, "`hidden_units` must be a list of positive"),
        ({"split_sizes": [1, 2]}, ValueError, r"`split_sizes` must be three .* \[1, 2\]"),
        ({"published": {"value": 1}}, ValueError, "missing \\['metric', 'source'\\]"),
        ({"wayz": 5}, ValueError, r"Unknown configuration fields \['wayz'\]"),
        ({"lr_schedule": "step"}, ValueError, "needs `lr_decay_steps`"),
        ({"inner_batch_size": 4}, ValueError, "options of the reptile algorithm"),
        ({"dataset": "sinusoid"}, ValueError, "model='mlp'"),
        ({"dataset": "folder", "split": "mixed"}, ValueError, "split='random'"),
    ],
)
def test_invalid_fields_name_the_field_and_value(fields, error, message):
    with pytest.raises(error, match=message):
        RunConfig.from_dict(fields)


def test_the_configuration_is_immutable_and_overrides_revalidate():
    config = RunConfig()
    with pytest.raises(AttributeError):
        config.ways = 3
    with pytest.raises(ValueError, match="received ways=-1"):
        config.override(ways=-1)
    with pytest.raises(ValueError, match="Unknown configuration fields"):
        config.override(wayz=1)


def test_answers_in_place_of_the_raw_dict():
    sine = protocols.get_protocol("maml-sinusoid")
    assert sine.is_regression and sine.input_shape == (1,)
    assert sine.monitor == ("val_loss", "min")
    assert sine.train_episode_shape == (1, 10, 10) and sine.eval_episode_shape == (1, 10, 100)
    assert sine.epochs_and_steps == (70, 1000)
    proto = protocols.get_protocol("protonet-omniglot-20w1s")
    assert not proto.is_regression and proto.monitor == ("val_accuracy", "max")
    assert proto.train_episode_shape == (60, 1, 5) and proto.eval_episode_shape == (20, 1, 15)
    assert proto.input_shape == (28, 28, 1)
    rgb = RunConfig(dataset="folder", split="random", color_mode="rgb", image_size=32)
    assert rgb.input_shape == (32, 32, 3)
    # 1234 iterations in epochs of at most 500: 3 epochs of 412 (1236 >= 1234).
    assert RunConfig(iterations=1234, steps_per_epoch=500).epochs_and_steps == (3, 412)


def test_protocols_are_data_with_one_split():
    omniglot = [protocols.get_protocol(n) for n in protocols.list_protocols()]
    omniglot = [c for c in omniglot if c.dataset == "omniglot"]
    assert omniglot and all(c.split_sizes == protocols.MAML_SPLIT_SIZES for c in omniglot)
    assert sum(protocols.MAML_SPLIT_SIZES) == 1623  # Omniglot's characters
    with pytest.raises(ValueError, match="Unknown protocol 'nope'; the protocols are: "):
        RunConfig.from_protocol("nope")


def test_the_former_presets_functions_still_answer_with_a_warning():
    from keras_meta import presets

    with pytest.warns(DeprecationWarning, match="keras_meta.experiments"):
        old = presets.get_preset("maml-omniglot-5w1s")
    assert old == protocols.get_protocol("maml-omniglot-5w1s").to_dict()
    with pytest.warns(DeprecationWarning):
        assert presets.list_presets() == protocols.list_protocols()
    with pytest.warns(DeprecationWarning):
        assert presets.resolve_config("maml-sinusoid", iterations=7)["iterations"] == 7
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="Unknown preset 'x'"):
        presets.get_preset("x")


@pytest.mark.parametrize(
    "dataset, split, input_shape",
    [
        ("omniglot", "mixed", (28, 28, 1)),
        ("folder", "random", (28, 28, 1)),
        ("cifar_fs", "benchmark", (32, 32, 3)),
        ("fc100", "benchmark", (32, 32, 3)),
        ("cub", "benchmark", (84, 84, 3)),
        ("mini_imagenet", "benchmark", (84, 84, 3)),
        ("tiered_imagenet", "benchmark", (84, 84, 3)),
    ],
)
def test_each_dataset_fills_in_its_split_image_size_and_channels(dataset, split, input_shape):
    config = RunConfig(dataset=dataset)
    assert (config.split, config.input_shape) == (split, input_shape)
    # Given values win, and the stored configuration names the filled-in ones.
    small = RunConfig(dataset=dataset, image_size=20, color_mode="grayscale")
    assert small.input_shape == (20, 20, 1)
    stored = config.to_dict()
    assert stored["split"] == split and stored["image_size"] == input_shape[0]
    assert RunConfig.from_dict(json.loads(json.dumps(stored))) == config


def test_sinusoid_fills_in_split_none():
    assert RunConfig(dataset="sinusoid", model="mlp").split == "none"


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"dataset": "cifar_fs", "split": "random"},
         r"The cifar_fs dataset takes split='benchmark' .*; received split='random'"),
        ({"dataset": "omniglot", "split": "benchmark"},
         r"The omniglot dataset takes split='mixed' .* or 'official' .*; "
         r"received split='benchmark'"),
        ({"dataset": "folder", "split": "none"}, r"takes split='random' .*; received split='none'"),
        ({"dataset": "mini_imagenet", "split_sizes": [64, 16, 20]},
         r"own class split; `split_sizes` does not apply; received split_sizes=\[64, 16, 20\]"),
        ({"dataset": "tiered_imagenet", "augmentation": "rotations_as_classes"},
         "'rotations_as_classes' needs the images in memory; .* tiered_imagenet"),
        ({"dataset": "cub", "model": "mlp"}, "image datasets model='conv4'.*dataset='cub'"),
        ({"dataset": "imagenet"}, r"`dataset` must be one of .*'mini_imagenet'.*'imagenet'"),
        ({"dataset": "cifar_fs", "split": "mixd"}, r"`split` must be one of .*'benchmark'"),
    ],
)
def test_dataset_rules_name_the_field_and_value(fields, message):
    with pytest.raises(ValueError, match=message):
        RunConfig.from_dict(fields)


def test_mini_imagenet_protocols_are_the_papers():
    # Finn et al. 2017 (sec. 5.2, Table 2) and MAML's main.py; Snell et al. 2017
    # (sec. 3.2, Table 2).
    for shots, batch, value, ci in ((1, 4, 0.4870, 0.0184), (5, 2, 0.6311, 0.0092)):
        c = protocols.get_protocol(f"maml-miniimagenet-5w{shots}s")
        assert (c.dataset, c.split, c.input_shape) == ("mini_imagenet", "benchmark", (84, 84, 3))
        assert (c.algorithm, c.filters, c.pooling, c.inner_learning_rate) == ("maml", 32, "max",
                                                                              0.01)
        assert (c.inner_steps, c.eval_inner_steps, c.meta_batch_size) == (5, 10, batch)
        assert c.train_episode_shape == (5, shots, 15) and c.eval_episode_shape == (5, shots,
                                                                                    shots)
        assert (c.iterations, c.optimizer, c.meta_learning_rate) == (60000, "adam", 1e-3)
        assert (c.published["value"], c.published["ci95"]) == (value, ci)
        assert "no ImageNet" in c.notes
    for shots, ways, value, ci in ((1, 30, 0.4942, 0.0078), (5, 20, 0.6820, 0.0066)):
        c = protocols.get_protocol(f"protonet-miniimagenet-5w{shots}s")
        assert (c.algorithm, c.filters, c.input_shape) == ("protonet", 64, (84, 84, 3))
        assert c.train_episode_shape == (ways, shots, 15)
        assert c.eval_episode_shape == (5, shots, 15) and c.eval_episodes == 600
        assert (c.lr_schedule, c.lr_decay_steps, c.lr_decay_rate) == ("step", 2000, 0.5)
        assert (c.published["value"], c.published["ci95"]) == (value, ci)


def test_a_resumed_run_takes_a_new_data_dir_but_no_other_change(tmp_path):
    from keras_meta.experiments import run_dir as files
    from keras_meta.experiments.runs import RunError, prepare_run

    run = tmp_path / "run"
    run.mkdir()
    stored = RunConfig(dataset="folder", data_dir="old/place", split="random", iterations=20)
    files.write_config(run, stored)
    config, resuming = prepare_run(run, None, {"data_dir": "new/place"})
    assert resuming and config.data_dir == "new/place"
    assert config.to_dict() == stored.override(data_dir="new/place").to_dict()
    assert prepare_run(run)[0].data_dir == "old/place"
    with pytest.raises(RunError, match=r"another configuration \(iterations: 20 -> 30\)"):
        prepare_run(run, None, {"data_dir": "new/place", "iterations": 30})
