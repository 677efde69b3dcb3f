"""keras_meta.models: the protocols' networks, checked against hand-computed
shapes and parameter counts."""

import keras
import numpy as np
import pytest

from keras_meta import models
from keras_meta.experiments import builders, protocols


def _conv4_params(channels, filters, bn_scale, outputs, features=None):
    """Hand count: 4 convs 3x3 (+bias), BatchNorm (beta, moving mean and
    variance, gamma when it scales), a dense head on `features` inputs (the
    `filters` of a pooled last map by default)."""
    convs = 9 * channels * filters + filters + 3 * (9 * filters * filters + filters)
    bn = 4 * filters * (4 if bn_scale else 3)
    features = filters if features is None else features
    head = 0 if outputs is None else features * outputs + outputs
    return convs + bn + head


def test_strided_conv4_is_mamls_omniglot_network():
    net = models.conv4((28, 28, 1), num_outputs=5, pooling="strided", bn_scale=False)
    # Stride 2 with "same" padding: 28 -> 14 -> 7 -> 4 -> 2, then a mean over 2x2.
    sizes = [net.get_layer(f"conv{i}").output.shape[1] for i in range(1, 5)]
    assert sizes == [14, 7, 4, 2]
    assert not any(isinstance(layer, keras.layers.MaxPooling2D) for layer in net.layers)
    assert net.count_params() == _conv4_params(1, 64, False, 5)
    # The head sees the mean of the last feature map.
    x = np.random.default_rng(0).random((2, 28, 28, 1), "float32")
    features = keras.Model(net.input, net.get_layer("relu4").output)(x)
    head = net.get_layer("head")
    expected = np.mean(features, axis=(1, 2)) @ head.kernel.numpy() + head.bias.numpy()
    np.testing.assert_allclose(net(x), expected, rtol=1e-5, atol=1e-5)


def test_max_pooling_conv4_is_protonets_embedding():
    net = models.conv4((28, 28, 1), pooling="max")
    # 28 -> 14 -> 7 -> 3 -> 1 by 2x2 max-pooling: a 64-d embedding.
    assert net.output_shape == (None, 64)
    assert [net.get_layer(f"pool{i}").output.shape[1] for i in range(1, 5)] == [14, 7, 3, 1]
    assert net.count_params() == _conv4_params(1, 64, True, None)


def test_mlp_is_mamls_sinusoid_network():
    net = models.mlp()
    assert [layer.units for layer in net.layers[1:]] == [40, 40, 1]
    assert net.count_params() == (1 * 40 + 40) + (40 * 40 + 40) + (40 + 1)


@pytest.mark.parametrize("name", protocols.list_protocols())
def test_each_protocol_builds_its_network(name):
    config = protocols.get_protocol(name)
    net = builders.build_model(config)
    if config.model == "mlp":
        assert net.count_params() == models.mlp().count_params()
        return
    outputs = None if config.algorithm == "protonet" else config.ways
    size, _, channels = config.input_shape
    strided = config.pooling == "strided"
    # A max-pooled map is flattened into the head (84 -> 42 -> 21 -> 10 -> 5 on
    # mini-ImageNet: MAML's 5x5x32 features); Omniglot's ends at 1x1.
    side = size
    for _ in range(4):
        side //= 2
    features = None if strided else side * side * config.filters
    expected = _conv4_params(channels, config.filters, config.bn_scale, outputs, features)
    assert net.count_params() == expected
    # MAML and Reptile use stride-2 convolutions on Omniglot, max-pooling on
    # mini-ImageNet (as in MAML's code); ProtoNets always max-pools.
    assert strided == (config.algorithm != "protonet" and config.dataset == "omniglot")
    assert any(isinstance(layer, keras.layers.MaxPooling2D) for layer in net.layers) != strided


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="`pooling` must be one of"):
        models.conv4(pooling="avg")
    with pytest.raises(ValueError, match="`hidden_units` must be an integer >= 1"):
        models.mlp(hidden_units=(40, 0))
