"""R2D2: a differentiable closed-form ridge-regression head.

Bertinetto, Henriques, Torr & Vedaldi, "Meta-learning with differentiable
closed-form solvers" (ICLR 2019); the same head is MetaOptNet-RR's (Lee et
al., 2019).
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf
from keras import ops

from keras_meta.learners.embedding import EmbeddingLearner
from keras_meta.validation import check_bool, check_choice, check_number, check_positive

SOLVERS = ("auto", "primal", "woodbury")


def ridge_weights(x, y, l2_regularizer, solver: str = "auto"):
    """The ridge-regression solution `argmin_W ||x W - y||² + λ ||W||²`.

    `"primal"` solves `(xᵀx + λI_D) W = xᵀy` (a D×D system);
    `"woodbury"` computes `W = xᵀ (x xᵀ + λI_S)⁻¹ y` (an S×S system), the
    same matrix by the Woodbury identity and the cheaper one when there are
    fewer examples S than features D, as in few-shot episodes. `"auto"`
    picks the smaller system (at run time when S is not static). Both are
    `tf.linalg.solve` calls (LU with pivoting: more forgiving than a
    Cholesky factorisation when rounding makes the matrix indefinite),
    differentiable in `x`, `y` and `λ`, and compile under XLA. Keep λ
    well above float32 rounding of `x xᵀ`: a system that is singular in
    float32 has no solution.

    Args:
        x: `[S, D]` features.
        y: `[S, C]` targets.
        l2_regularizer: λ > 0 (float or scalar tensor).
        solver: `"auto"`, `"primal"` or `"woodbury"`.

    Returns:
        `[D, C]` weights.

    Example:

    >>> import numpy as np
    >>> x = np.random.rand(3, 5).astype("float32")
    >>> y = np.eye(3, dtype="float32")
    >>> w = ridge_weights(x, y, 0.1, solver="woodbury")
    >>> ref = np.linalg.solve(x.T @ x + 0.1 * np.eye(5), x.T @ y)
    >>> bool(np.allclose(w, ref, atol=1e-4))
    True
    """
    check_choice("solver", solver, SOLVERS)
    x = tf.convert_to_tensor(x)
    y = tf.cast(y, x.dtype)
    lam = tf.cast(l2_regularizer, x.dtype)

    def primal():
        gram = tf.matmul(x, x, transpose_a=True)
        eye = tf.eye(tf.shape(gram)[0], dtype=x.dtype)
        return tf.linalg.solve(gram + lam * eye, tf.matmul(x, y, transpose_a=True))

    def woodbury():
        kernel = tf.matmul(x, x, transpose_b=True)
        eye = tf.eye(tf.shape(kernel)[0], dtype=x.dtype)
        return tf.matmul(x, tf.linalg.solve(kernel + lam * eye, y), transpose_a=True)

    if solver == "primal":
        return primal()
    if solver == "woodbury":
        return woodbury()
    num, dim = x.shape[0], x.shape[1]
    if num is not None and dim is not None:
        return woodbury() if num < dim else primal()
    shape = tf.shape(x)
    return tf.cond(shape[0] < shape[1], woodbury, primal)


@keras.saving.register_keras_serializable(package="keras_meta")
class R2D2(EmbeddingLearner):
    """Ridge regression to differentiable discriminator (R2D2).

    On each episode a ridge regression from the support embeddings `X`
    `[S, D]` (with a column of ones appended when `fit_intercept`, as in
    R2D2's code) to one-hot labels `Y` `[S, ways]` is solved in closed
    form, `W = Xᵀ (X Xᵀ + λI)⁻¹ Y` (the Woodbury form when S < D, see
    `ridge_weights`), and the query logits are `scale · X_query W + bias`.
    The embedding, and optionally λ, the scale and the bias, are
    meta-learned through the solve by the compiled loss (default: sparse
    categorical cross-entropy on logits).

    The output bias is a scalar as in R2D2; under a softmax loss it shifts
    every logit equally, so it changes neither predictions nor the loss
    (its gradient is zero) and is kept for fidelity to the paper. The
    per-class intercepts come from `fit_intercept`.

    Args:
        embedding_model: any `keras.Model` mapping inputs to embeddings.
        l2_regularizer: λ, or its initial value when learned. R2D2's code
            divides features and targets by √S first, which is the same as
            our λ = S · λ_R2D2.
        learn_l2_regularizer: meta-learn λ (as R2D2 does); it is stored as
            `log λ` so that it stays positive.
        scale: the initial (or fixed) output scale. Ridge outputs regress
            0/1 targets, so a softmax over them is flat without one.
        bias: the initial (or fixed) output bias.
        learn_scale: meta-learn the scale and the bias.
        fit_intercept: append a constant feature so that the regression
            has a (regularised) intercept per class.
        solver: `"auto"`, `"primal"` or `"woodbury"`, see `ridge_weights`.
        ways: classes per episode, or `None` to infer them from the support
            labels at run time (see `EmbeddingLearner`; needed for XLA).
        bn_mode: `"transductive"` or `"running"`, see `MetaLearner`.

    Example:

    >>> import keras, numpy as np, keras_meta as km
    >>> net = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16)])
    >>> learner = km.R2D2(net, l2_regularizer=1.0)
    >>> learner.compile(optimizer="adam", metrics=["accuracy"])
    >>> x = {"support_x": np.random.rand(4, 5, 8).astype("float32"),
    ...      "support_y": np.tile(np.arange(5), (4, 1)),
    ...      "query_x": np.random.rand(4, 10, 8).astype("float32")}
    >>> y = np.tile(np.arange(5).repeat(2), (4, 1))
    >>> history = learner.fit(x, y, batch_size=2, epochs=1, verbose=0)
    >>> adapted = learner.adapt(x["support_x"][0], x["support_y"][0])
    >>> adapted.predict(x["query_x"][0], verbose=0).shape
    (10, 5)
    """

    def __init__(
        self,
        embedding_model,
        l2_regularizer: float = 1.0,
        learn_l2_regularizer: bool = True,
        scale: float = 10.0,
        bias: float = 0.0,
        learn_scale: bool = True,
        fit_intercept: bool = True,
        solver: str = "auto",
        ways: int | None = None,
        bn_mode: str = "transductive",
        **kwargs,
    ):
        super().__init__(embedding_model, ways=ways, bn_mode=bn_mode, **kwargs)
        self.initial_l2_regularizer = check_positive("l2_regularizer", l2_regularizer)
        self.learn_l2_regularizer = check_bool("learn_l2_regularizer", learn_l2_regularizer)
        self.initial_scale = check_positive("scale", scale)
        self.initial_bias = check_number("bias", bias)
        self.learn_scale = check_bool("learn_scale", learn_scale)
        self.fit_intercept = check_bool("fit_intercept", fit_intercept)
        self.solver = check_choice("solver", solver, SOLVERS)
        self._log_l2 = self._scale = self._bias = None
        if learn_l2_regularizer:
            self._log_l2 = self.add_weight(
                shape=(),
                initializer=keras.initializers.Constant(math.log(self.initial_l2_regularizer)),
                name="log_l2_regularizer",
            )
        if learn_scale:
            self._scale = self.add_weight(
                shape=(),
                initializer=keras.initializers.Constant(self.initial_scale),
                name="scale",
            )
            self._bias = self.add_weight(
                shape=(),
                initializer=keras.initializers.Constant(self.initial_bias),
                name="bias",
            )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "l2_regularizer": self.initial_l2_regularizer,
                "learn_l2_regularizer": self.learn_l2_regularizer,
                "scale": self.initial_scale,
                "bias": self.initial_bias,
                "learn_scale": self.learn_scale,
                "fit_intercept": self.fit_intercept,
                "solver": self.solver,
            }
        )
        return config

    # Current values, as floats for inspection and as tensors for tracing.
    @property
    def l2_regularizer(self) -> float:
        """The current λ."""
        return float(ops.convert_to_numpy(self._l2_tensor()))

    @property
    def scale(self) -> float:
        """The current output scale."""
        return float(ops.convert_to_numpy(self._scale_tensor()))

    @property
    def bias(self) -> float:
        """The current output bias."""
        return float(ops.convert_to_numpy(self._bias_tensor()))

    def _l2_tensor(self):
        if self._log_l2 is None:
            return tf.constant(self.initial_l2_regularizer)
        return tf.exp(tf.convert_to_tensor(self._log_l2))

    def _scale_tensor(self):
        if self._scale is None:
            return tf.constant(self.initial_scale)
        return tf.convert_to_tensor(self._scale)

    def _bias_tensor(self):
        if self._bias is None:
            return tf.constant(self.initial_bias)
        return tf.convert_to_tensor(self._bias)

    def fit_head(self, support_embeddings, support_y, ways):
        """`(W [D, ways], intercepts [ways])` of the episode's ridge regression."""
        x = support_embeddings
        if self.fit_intercept:
            x = tf.concat([x, tf.ones_like(x[:, :1])], axis=1)
        targets = tf.one_hot(support_y, ways, dtype=x.dtype)
        w = ridge_weights(x, targets, self._l2_tensor(), self.solver)
        if self.fit_intercept:
            return w[:-1], w[-1]
        return w, tf.zeros_like(w[0])

    def _kernel_and_bias(self, head, dtype):
        w, intercept = head
        scale = tf.cast(self._scale_tensor(), dtype)
        return scale * w, scale * intercept + tf.cast(self._bias_tensor(), dtype)

    def head_logits(self, query_embeddings, head):
        kernel, bias = self._kernel_and_bias(head, query_embeddings.dtype)
        return tf.matmul(query_embeddings, kernel) + bias

    def head_layer(self, head):
        # A plain Dense layer: the adapted model needs no keras_meta to load.
        kernel, bias = self._kernel_and_bias(head, head[0].dtype)
        layer = keras.layers.Dense(int(kernel.shape[1]), name="ridge_head")
        layer.build((None, int(kernel.shape[0])))
        layer.kernel.assign(kernel)
        layer.bias.assign(bias)
        return layer
