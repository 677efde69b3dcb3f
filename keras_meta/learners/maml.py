"""MAML (Finn et al., 2017), first-order MAML and the MAML++ options.

MAML++ (Antoniou, Edwards and Storkey, 2019, "How to train your MAML") is
MAML with five independent changes, each an option here:

- `multi_step_loss`: the meta-loss is a weighted sum of the query losses
  after every inner step, the weights annealed toward the last step over
  `multi_step_loss_epochs` epochs (MSL);
- `first_order_epochs`: first-order meta-gradients for the first epochs,
  then second order (derivative-order annealing, DA);
- `learn_inner_rates`: a learned inner learning rate per weight tensor and
  per step (LSLR);
- `per_step_bn`: per-step BatchNorm weights and moving statistics
  (BNWB + BNRS);
- cosine annealing of the meta learning rate (CA) is a Keras schedule:
  `keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(...))`.

The epoch-dependent options read `learner.meta_epoch`, a non-trainable
variable saved with the learner that `fit` advances at the end of every
epoch (see `MAML`).
"""

from __future__ import annotations

import inspect

import keras
import tensorflow as tf

from keras_meta.learners._per_step_bn import PerStepBatchNorm, PerStepBatchNormState
from keras_meta.learners.gradient import GradientLearner
from keras_meta.validation import check_bool, check_int


class _EpochCounter(keras.callbacks.Callback):
    """Advances the learner's `meta_epoch` at the end of every epoch."""

    def __init__(self, variable):
        super().__init__()
        self._variable = variable

    def on_epoch_end(self, epoch, logs=None):
        self._variable.assign_add(1)


@keras.saving.register_keras_serializable(package="keras_meta")
class MAML(GradientLearner):
    """Model-Agnostic Meta-Learning, with the MAML++ options.

    The inner loop takes `inner_steps` SGD steps on each episode's support
    loss; the meta-gradient is the gradient of the mean query loss after
    adaptation, differentiated through the inner loop (second order) unless
    `first_order=True`.

    Args:
        model: any `keras.Model` (Functional, Sequential or subclassed).
        inner_learning_rate: the inner SGD step size (α in the paper); with
            `learn_inner_rates`, the initial value of the learned rates.
        inner_steps: inner steps during `fit`.
        eval_inner_steps: inner steps in `evaluate`/`predict`/`adapt`
            (default: `inner_steps`). Per-step weights (learned rates,
            per-step BatchNorm) of steps beyond `inner_steps` are those of
            the last training step.
        first_order: first-order MAML (FOMAML).
        multi_step_loss: MAML++'s multi-step loss: the meta-training loss is
            `Σ_k w_k · L_query(φ_k)` over the inner steps `k`, with the
            paper's weights: uniform at `meta_epoch` 0, moving linearly
            toward the last step (the others decay to `0.03 / inner_steps`)
            until `multi_step_loss_epochs`, after which only the last step
            counts (`step_loss_weights()` gives the current weights). `fit`
            reports this weighted loss; evaluation reports the last step's.
        multi_step_loss_epochs: epochs over which the weights are annealed.
        learn_inner_rates: MAML++'s per-layer per-step learning rates: one
            learned scalar per adapted weight tensor and inner step
            (`learner.inner_rates`, shape `[inner_steps]` each).
        per_step_bn: MAML++'s per-step BatchNorm: every BatchNormalization
            layer of the model gets per-step copies of its `gamma`/`beta`
            (learner weights, meta-learned, not adapted in the inner loop)
            and of its moving statistics (learner state, updated by the
            passes of their step). Inner step `k` and the query pass after
            `k + 1` steps use copy `k`. The model's own BatchNorm weights are
            unused by the learner; `adapt()` returns a model whose BatchNorm
            layers hold the copy of the last step.
        first_order_epochs: derivative-order annealing: while `meta_epoch <
            first_order_epochs` the meta-gradient is first order, then
            second order. Both graphs are built once and a `tf.cond` on
            `meta_epoch` picks one per step, so the first-order phase really
            skips the second-order computation.
        adapt_layers: layers adapted in the inner loop (default: all).
        bn_mode: `"transductive"` or `"running"`, see `MetaLearner`.

    `meta_epoch` (an int64 learner variable, saved in `.keras` files;
    `None` unless `multi_step_loss` or `first_order_epochs` is set) counts
    the epochs trained: `fit` adds a callback that increments it at the end
    of every epoch, whatever `initial_epoch` says, so a reloaded learner
    resumes its schedules where it stopped. When training with
    `train_on_batch`, set it yourself: `learner.meta_epoch.assign(epoch)`.

    Example:

    >>> import keras, keras_meta as km
    >>> net = keras.Sequential([keras.Input((1,)), keras.layers.Dense(40, "relu"),
    ...                         keras.layers.Dense(40, "relu"), keras.layers.Dense(1)])
    >>> learner = km.MAML(net, inner_learning_rate=0.01, inner_steps=1)
    >>> learner.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    >>> tasks = km.data.sinusoid(shots=10, queries=10, seed=0).batch(25)
    >>> history = learner.fit(tasks, steps_per_epoch=2, epochs=1, verbose=0)

    MAML++ (all options; cosine-annealed meta learning rate):

    >>> net = keras.Sequential([keras.Input((1,)), keras.layers.Dense(40),
    ...                         keras.layers.BatchNormalization(),
    ...                         keras.layers.ReLU(), keras.layers.Dense(1)])
    >>> learner = km.MAML(net, inner_learning_rate=0.01, inner_steps=3,
    ...                   multi_step_loss=True, multi_step_loss_epochs=10,
    ...                   learn_inner_rates=True, per_step_bn=True,
    ...                   first_order_epochs=5)
    >>> schedule = keras.optimizers.schedules.CosineDecay(
    ...     1e-3, decay_steps=1000, alpha=1e-2)
    >>> learner.compile(optimizer=keras.optimizers.Adam(schedule), loss="mse")
    >>> history = learner.fit(tasks, steps_per_epoch=2, epochs=2, verbose=0)
    >>> int(learner.meta_epoch.numpy())
    2
    """

    def __init__(
        self,
        model,
        inner_learning_rate: float = 0.4,
        inner_steps: int = 1,
        eval_inner_steps: int | None = None,
        first_order: bool = False,
        multi_step_loss: bool = False,
        multi_step_loss_epochs: int = 10,
        learn_inner_rates: bool = False,
        per_step_bn: bool = False,
        first_order_epochs: int | None = None,
        **kwargs,
    ):
        super().__init__(
            model,
            inner_learning_rate=inner_learning_rate,
            inner_steps=inner_steps,
            eval_inner_steps=eval_inner_steps,
            first_order=first_order,
            **kwargs,
        )
        check_bool("multi_step_loss", multi_step_loss)
        check_int("multi_step_loss_epochs", multi_step_loss_epochs)
        check_bool("learn_inner_rates", learn_inner_rates)
        check_bool("per_step_bn", per_step_bn)
        first_order_epochs = check_int("first_order_epochs", first_order_epochs, 0, allow_none=True)
        if first_order_epochs is not None:
            if first_order:
                raise ValueError(
                    "`first_order_epochs` anneals from first- to second-order "
                    "meta-gradients; it cannot be combined with "
                    "`first_order=True` (first order throughout)."
                )
        self.multi_step_loss = multi_step_loss
        self.multi_step_loss_epochs = multi_step_loss_epochs
        self.learn_inner_rates = learn_inner_rates
        self.per_step_bn = per_step_bn
        self.first_order_epochs = first_order_epochs
        self.meta_epoch = None
        if multi_step_loss or first_order_epochs is not None:
            self.meta_epoch = self.add_weight(
                shape=(),
                dtype="int64",
                initializer="zeros",
                trainable=False,
                name="meta_epoch",
            )
        # Filled by build_meta_weights: one entry per model weight (None
        # where there is none) and the per-step BatchNorm copies.
        self._rates = []
        self._per_step_bn: PerStepBatchNorm | None = None
        self._maybe_build_meta_weights()

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "multi_step_loss": self.multi_step_loss,
                "multi_step_loss_epochs": self.multi_step_loss_epochs,
                "learn_inner_rates": self.learn_inner_rates,
                "per_step_bn": self.per_step_bn,
                "first_order_epochs": self.first_order_epochs,
            }
        )
        return config

    def fit(self, *args, **kwargs):
        if self.meta_epoch is None:
            return super().fit(*args, **kwargs)
        arguments = inspect.signature(keras.Model.fit).bind(self, *args, **kwargs)
        arguments = dict(arguments.arguments)
        del arguments["self"]
        callbacks = arguments.get("callbacks") or []
        if isinstance(callbacks, keras.callbacks.CallbackList):
            callbacks = callbacks.callbacks
        arguments["callbacks"] = list(callbacks) + [_EpochCounter(self.meta_epoch)]
        return super().fit(**arguments)

    # ------------------------------------------------------------------
    # Learner weights of the MAML++ options.
    # ------------------------------------------------------------------
    def build_meta_weights(self):
        steps = self.inner_steps
        if self.per_step_bn:
            self._per_step_bn = PerStepBatchNorm(self, self.model, steps)
        if self.learn_inner_rates:
            rates = []
            for variable, adapted in zip(self.model.trainable_variables, self.adapted_mask()):
                rates.append(
                    self.add_weight(
                        shape=(steps,),
                        initializer=keras.initializers.Constant(self.inner_learning_rate),
                        dtype=variable.dtype,
                        name=variable.path.replace("/", "_") + "_inner_rates",
                    )
                    if adapted
                    else None
                )
            self._rates = rates

    @property
    def inner_rates(self) -> list:
        """The learned per-step rates (`learn_inner_rates`), model order."""
        return [r for r in self._rates if r is not None]

    # ------------------------------------------------------------------
    # Inner loop.
    # ------------------------------------------------------------------
    def adapted_mask(self) -> list[bool]:
        mask = super().adapted_mask()
        # Per-step BatchNorm weights are meta-learned only, as in the paper.
        for i in self._per_step_bn.weight_indices() if self._per_step_bn else ():
            mask[i] = False
        if not any(mask):
            raise ValueError(
                "With `per_step_bn=True` the BatchNorm weights are not adapted, "
                "and `adapt_layers` selects no other weight."
            )
        return mask

    def inner_update(self, step: int, index: int, param, grad):
        if not self.learn_inner_rates:
            return super().inner_update(step, index, param, grad)
        rate = self._rates[index][min(step, self.inner_steps - 1)]
        return param - tf.cast(rate, param.dtype) * grad

    def state_variables(self):
        if self._per_step_bn is None or not self._per_step_bn.statistics:
            return super().state_variables()
        return self._per_step_bn.state_variables(super().state_variables())

    def step_forward(self, params, state, x, training, step):
        if self._per_step_bn is None:
            return super().step_forward(params, state, x, training, step)
        return self._per_step_bn.forward(self.forward, params, state, x, training, step)

    def model_weights(self, params, state, step):
        if self._per_step_bn is None:
            return super().model_weights(params, state, step)
        params = self._per_step_bn.params_at(params, step)
        if isinstance(state, PerStepBatchNormState):
            state = self._per_step_bn.model_state_at(state, step)
        return params, state

    # ------------------------------------------------------------------
    # Meta-objective.
    # ------------------------------------------------------------------
    def step_loss_weights(self):
        """The multi-step loss weights at the current `meta_epoch`, `[inner_steps]`.

        As in the reference implementation of MAML++: at epoch `e` with
        `K` steps and `N = multi_step_loss_epochs`, every step but the last
        weighs `max(1/K − e/(K·N), 0.03/K)` and the last `min(1/K +
        e·(K−1)/(K·N), 1 − 0.03·(K−1)/K)`; from epoch `N` on, the last step
        weighs 1 and the others 0.

        Example:

        >>> import keras, keras_meta as km
        >>> net = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
        >>> learner = km.MAML(net, 0.1, inner_steps=2, multi_step_loss=True,
        ...                   multi_step_loss_epochs=4)
        >>> learner.step_loss_weights().numpy().tolist()
        [0.5, 0.5]
        >>> _ = learner.meta_epoch.assign(2)
        >>> learner.step_loss_weights().numpy().tolist()
        [0.25, 0.75]
        """
        if not self.multi_step_loss:
            raise ValueError("`step_loss_weights` needs `multi_step_loss=True`.")
        k = self.inner_steps
        # float64, so that float64 models get exact weights (then cast).
        epoch = tf.cast(self.meta_epoch, "float64")
        epochs = float(self.multi_step_loss_epochs)
        decay = 1.0 / k / epochs
        floor = 0.03 / k
        others = tf.maximum(1.0 / k - epoch * decay, floor)
        last = tf.minimum(1.0 / k + epoch * (k - 1) * decay, 1.0 - (k - 1) * floor)
        annealed = tf.concat([tf.fill([k - 1], others), last[None]], axis=0)
        return tf.where(epoch < epochs, annealed, tf.one_hot(k - 1, k, dtype="float64"))

    def episode_loss(self, episode, state, first_order=None):
        steps = self.inner_steps
        step_losses = []

        def query_loss(step, params, state):
            if step < steps - 1:
                pred, _, _ = self.step_forward(params, state, episode.query_x, True, step)
                step_losses.append(self.outer_loss(episode.query_y, pred))

        params, state, _ = self.run_inner_loop(
            episode,
            state,
            training=True,
            steps=steps,
            first_order=first_order,
            on_step=query_loss if self.multi_step_loss else None,
        )
        pred, state, _ = self.step_forward(params, state, episode.query_x, True, steps - 1)
        loss = self.outer_loss(episode.query_y, pred)
        if self.multi_step_loss:
            weights = tf.cast(self.step_loss_weights(), loss.dtype)
            loss = tf.tensordot(weights, tf.stack(step_losses + [loss]), 1)
        return loss, pred, state

    def episode_gradients(self, episode, state, weight, **options):
        if self.first_order_epochs is None:
            return super().episode_gradients(episode, state, weight, **options)
        base = super()

        def gradients(first_order):
            return lambda: base.episode_gradients(episode, state, weight, first_order=first_order)

        return tf.cond(
            self.meta_epoch < self.first_order_epochs,
            gradients(True),
            gradients(False),
        )
