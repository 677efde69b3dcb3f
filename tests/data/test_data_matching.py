"""Tests of km.data.match_images / match_image_array and cross-domain evaluate."""

import logging

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import ce

import keras_meta as km

# ITU-R 601 luminance, the weights of tf.image.rgb_to_grayscale.
LUMA = np.array([0.2989, 0.5870, 0.1140])


def _images(n=30, size=6, channels=1, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, size, size, channels)).astype("float32")


def _labels(n=30, classes=5):
    return np.repeat(np.arange(classes), n // classes)


def _sampler(x, **kwargs):
    options = dict(ways=3, shots=2, queries=2, seed=3, num_episodes=4)
    options.update(kwargs)
    return km.data.episodes(x, _labels(len(x)), **options)


def _resize(images, size):
    return tf.image.resize(images, (size, size), method="bilinear", antialias=True).numpy()


def test_single_episodes_are_resized_like_tf_image_resize():
    raw = _sampler(_images())
    matched = km.data.match_images(raw, (13, 13, 1))
    for (x, y), (mx, my) in zip(raw, matched):
        for key in ("support_x", "query_x"):
            assert mx[key].shape == (len(x[key]), 13, 13, 1)
            np.testing.assert_allclose(mx[key].numpy(), _resize(x[key], 13), atol=1e-6)
        np.testing.assert_array_equal(mx["support_y"], x["support_y"])
        np.testing.assert_array_equal(my, y)


def test_batched_episodes_match_episode_by_episode():
    raw = _sampler(_images(), num_episodes=6)
    single = list(km.data.match_images(raw, (9, 9, 1)))
    batched = list(km.data.match_images(raw.batch(3), (9, 9, 1)))
    assert batched[0][0]["support_x"].shape == (3, 6, 9, 9, 1)
    for b, (x, y) in enumerate(batched):
        for i in range(3):
            sx, sy = single[3 * b + i]
            for key in ("support_x", "query_x"):
                np.testing.assert_allclose(x[key][i], sx[key], atol=1e-6)
            np.testing.assert_array_equal(y[i], sy)


def test_rgb_to_gray_uses_the_luminance_weights():
    rgb = _images(channels=3)
    matched = km.data.match_images(_sampler(rgb), (6, 6, 1))
    raw = _sampler(rgb)
    for (x, _), (mx, _) in zip(raw, matched):
        expected = x["support_x"].numpy().astype(np.float64) @ LUMA
        np.testing.assert_allclose(mx["support_x"][..., 0], expected, atol=1e-6)


def test_gray_to_rgb_repeats_the_resized_gray_level():
    matched = km.data.match_images(_sampler(_images()), (10, 10, 3))
    for (x, _), (mx, _) in zip(_sampler(_images()), matched):
        gray = _resize(x["query_x"], 10)
        np.testing.assert_allclose(mx["query_x"], np.repeat(gray, 3, axis=-1), atol=1e-6)


def test_rgb_resized_and_converted_to_gray_matches_the_reference():
    rgb = _images(channels=3)
    expected = _resize(rgb, 12).astype(np.float64) @ LUMA
    out = km.data.match_image_array(rgb, (12, 12, 1)).numpy()
    assert out.shape == (30, 12, 12, 1)
    np.testing.assert_allclose(out[..., 0], expected, atol=1e-5)


def test_array_version_keeps_leading_axes():
    x = _images().reshape(5, 6, 6, 6, 1)
    out = km.data.match_image_array(x, (8, 8, 1)).numpy()
    assert out.shape == (5, 6, 8, 8, 1)
    np.testing.assert_allclose(out[2], _resize(x[2], 8), atol=1e-6)


def test_same_shape_returns_the_dataset_itself():
    raw = _sampler(_images())
    assert km.data.match_images(raw, (6, 6, 1)) is raw


def test_episode_config_records_the_matched_shape():
    matched = km.data.match_images(_sampler(_images()), (8, 8, 1))
    assert matched.episode_config["matched_input_shape"] == [8, 8, 1]
    assert matched.episode_config["input_shape"] == [6, 6, 1]


@pytest.mark.parametrize(
    "channels, target",
    [(4, (6, 6, 2)), (2, (6, 6, 1)), (1, (6, 6, 4)), (3, (6, 6, 2))],
)
def test_unconvertible_channels_name_both_shapes(channels, target):
    raw = _sampler(_images(channels=channels))
    with pytest.raises(ValueError, match=rf"\(6, 6, {channels}\).*{target[-1]}\)"):
        km.data.match_images(raw, target)


def test_non_image_examples_are_an_error_naming_both_shapes():
    vectors = np.random.default_rng(0).random((30, 7)).astype("float32")
    with pytest.raises(ValueError, match=r"shape \(7,\) to the input shape \(28, 28, 1\)"):
        km.data.match_images(_sampler(vectors), (28, 28, 1))
    with pytest.raises(ValueError, match=r"shape \(6, 6\) to the input shape"):
        km.data.match_image_array(np.zeros((6, 6), "float32"), (28, 28, 1))


@pytest.mark.parametrize("input_shape", [(28, 28), (28, 0, 1), "28x28", (28.0, 28, 1)])
def test_bad_input_shape(input_shape):
    with pytest.raises((ValueError, TypeError), match="input_shape"):
        km.data.match_images(_sampler(_images()), input_shape)


def test_not_a_dataset():
    with pytest.raises(TypeError, match="tf.data.Dataset.*ndarray"):
        km.data.match_images(_images(), (28, 28, 1))


@pytest.mark.parametrize("top", [16.0, 255.0])
def test_unscaled_pixels_are_an_error_suggesting_scale(top):
    x = np.round(_images() * top)
    with pytest.raises(ValueError, match=r"values in \[0, 1\].*up to \d+.*scale="):
        km.data.match_images(_sampler(x), (8, 8, 1))
    with pytest.raises(ValueError, match="scale="):
        km.data.match_image_array(x, (8, 8, 1))
    # The sampler's scale= is the fix.
    ex, _ = next(iter(km.data.match_images(_sampler(x, scale=top), (8, 8, 1))))
    assert float(tf.reduce_max(ex["support_x"])) <= 1.0


def test_unscaled_pixels_after_the_first_episode_fail_in_the_pipeline():
    x = _images(n=12).reshape(3, 4, 6, 6, 1)
    x[2] *= 255  # the third episode only
    episodes = tf.data.Dataset.from_tensor_slices(
        ({"support_x": x, "support_y": np.zeros((3, 4), "int32"), "query_x": x},
         np.zeros((3, 4), "int32"))
    )
    matched = km.data.match_images(episodes, (8, 8, 1))
    iterator = iter(matched)
    next(iterator), next(iterator)
    with pytest.raises(tf.errors.InvalidArgumentError, match="scale="):
        next(iterator)


# -- km.evaluate and adapt on another domain ----------------------------------------


def _protonet(input_shape):
    net = keras.Sequential(
        [
            keras.Input(input_shape),
            keras.layers.Conv2D(4, 3, name="conv"),
            keras.layers.GlobalAveragePooling2D(),
        ]
    )
    learner = km.ProtoNet(net)
    learner.compile(optimizer="adam", loss=ce(), metrics=["accuracy"])
    return learner


def test_evaluate_on_other_shapes_equals_evaluate_on_resized_episodes(caplog):
    learner = _protonet((12, 12, 3))
    x = _images(n=60)
    y = _labels(60, classes=6)
    options = dict(ways=3, shots=2, queries=3, seed=5, num_episodes=12)
    resized = km.data.match_image_array(x, (12, 12, 3)).numpy()
    reference = km.evaluate(
        learner, km.data.episodes(resized, y, **options), num_episodes=12,
        return_per_episode=True,
    )
    with caplog.at_level(logging.WARNING, logger="keras_meta.evaluation"):
        matched = km.evaluate(
            learner, km.data.episodes(x, y, **options), num_episodes=12,
            return_per_episode=True,
        )
        km.evaluate(learner, km.data.episodes(x, y, **options), num_episodes=12)
    np.testing.assert_allclose(
        matched["per_episode"]["loss"], reference["per_episode"]["loss"], rtol=1e-5
    )
    assert matched["accuracy"] == pytest.approx(reference["accuracy"], abs=1e-6)
    logged = [r for r in caplog.records if "match_images" in r.getMessage()]
    assert len(logged) == 1, logged
    assert "(6, 6, 1)" in logged[0].getMessage() and "(12, 12, 3)" in logged[0].getMessage()


def test_evaluate_without_matching_is_an_error_naming_both_shapes():
    learner = _protonet((12, 12, 1))
    episodes = _sampler(_images())
    with pytest.raises(ValueError, match=r"\(6, 6, 1\).*\(12, 12, 1\).*match_inputs=False"):
        km.evaluate(learner, episodes, num_episodes=4, match_inputs=False)
    with pytest.raises(TypeError, match="match_inputs"):
        km.evaluate(learner, episodes, num_episodes=4, match_inputs="yes")


def test_evaluate_refuses_unscaled_pixels_of_another_domain():
    learner = _protonet((12, 12, 1))
    with pytest.raises(ValueError, match="scale="):
        km.evaluate(learner, _sampler(np.round(_images() * 16)), num_episodes=4)


@pytest.mark.parametrize("learner_class", ["maml", "protonet"])
def test_adapt_and_fit_refuse_another_shape_naming_both(learner_class):
    if learner_class == "maml":
        net = keras.Sequential(
            [keras.Input((12, 12, 1)), keras.layers.Flatten(), keras.layers.Dense(3)]
        )
        learner = km.MAML(net, inner_learning_rate=0.1)
        learner.compile(optimizer="adam", loss=ce())
    else:
        learner = _protonet((12, 12, 1))
    support = _images(n=3)
    with pytest.raises(ValueError, match=r"\(6, 6, 1\) but .* \(12, 12, 1\).*match_images"):
        learner.adapt(support, np.arange(3))
    with pytest.raises(ValueError, match=r"\(6, 6, 1\) but .* \(12, 12, 1\)"):
        learner.fit(_sampler(_images()).batch(2), steps_per_epoch=1, verbose=0)
    # Matched, the same support set adapts.
    adapted = learner.adapt(km.data.match_image_array(support, (12, 12, 1)), np.arange(3))
    assert adapted.predict(np.zeros((2, 12, 12, 1), "float32"), verbose=0).shape == (2, 3)
