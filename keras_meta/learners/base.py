"""`MetaLearner`: the `keras.Model` that every meta-learning algorithm extends.

The base class owns what all algorithms share: episode unpacking and
validation (`_episodes.py`), the loop over the B episodes of a batch
(`_episode_loop.py`), `train_step`/`test_step`/`predict_step`, the compiled
loss used by both loops, BatchNorm modes, persistence and export. An
algorithm implements `adapt_and_predict` (and, if it is not differentiated
through, `episode_gradients`).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_meta import _keras_compat
from keras_meta._moments import learner_batch_norm
from keras_meta.input_checks import check_episode_inputs, check_single_output, check_wrapped_model
from keras_meta.learners import _episode_loop, _precision
from keras_meta.learners._building import BuildAndSerialize
from keras_meta.learners._episode_loop import DEFAULT_PARALLEL_EPISODES
from keras_meta.learners._episodes import (
    Episode,
    EpisodeBatch,
    check_label_range,
    unpack_episodes,
)
from keras_meta.validation import check_choice, check_int

BN_MODES = ("transductive", "running")


def _as_loss(loss) -> keras.losses.Loss:
    """Resolves a compiled loss to one `keras.losses.Loss` object."""
    if isinstance(loss, (dict, list, tuple)):
        raise ValueError(
            "keras_meta learners take a single loss (the loss of both the inner "
            f"and the outer loop); received {type(loss).__name__} {loss!r}."
        )
    resolved = keras.losses.get(loss)
    if isinstance(resolved, keras.losses.Loss):
        return resolved
    if callable(resolved):
        # A plain function: wrap it so that reduction and tf.distribute
        # scaling behave like those of Keras's own Loss classes.
        return _keras_compat.LossFunctionWrapper(resolved, name=getattr(resolved, "__name__", None))
    raise ValueError(f"Could not interpret the loss {loss!r}.")


class MetaLearner(_keras_compat.FirstReplicaBuild, BuildAndSerialize, keras.Model):
    """Base class of the keras_meta learners.

    Args:
        model: the wrapped `keras.Model` (Functional, Sequential or
            subclassed); its trainable weights are the meta-learned
            initialisation.
        bn_mode: how BatchNorm (and every layer with a `training` argument)
            behaves at evaluation, prediction and in `adapt`/`export`:
            `"transductive"` (default, as in the reference implementations:
            the model runs with `training=True`, so BatchNorm normalises with
            the statistics of the support batch while adapting and of the
            query batch while predicting) or `"running"` (`training=False`:
            the moving statistics gathered during meta-training). Meta-training
            always uses batch statistics and updates the moving statistics,
            so both modes can evaluate the same trained learner.
        parallel_episodes: how many episodes of a meta-batch may run at the
            same time (the `parallel_iterations` of the loop over episodes;
            default 4). A speed setting only: results are identical for any
            value; memory grows with it (one episode's graph each).

    Subclasses implement `adapt_and_predict`. A learner that does not adapt
    at all (a transfer-learning baseline) is four lines:

    >>> import keras, keras_meta as km
    >>> class NoAdaptation(km.MetaLearner):
    ...     def adapt_and_predict(self, episode, state, training):
    ...         pred, state, _ = self.forward(
    ...             self.model_params(), state, episode.query_x, training)
    ...         return pred, state
    >>> net = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    >>> learner = NoAdaptation(net)
    >>> learner.compile(optimizer="sgd", loss="mse")
    >>> tasks = km.data.sinusoid(seed=0).batch(4)
    >>> history = learner.fit(tasks, steps_per_epoch=2, verbose=0)
    """

    def __init__(
        self,
        model,
        bn_mode: str = "transductive",
        parallel_episodes: int = DEFAULT_PARALLEL_EPISODES,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(model, keras.Model):
            raise TypeError(
                "Expected `model` to be a keras.Model (Functional, Sequential "
                f"or subclassed); received {type(model).__name__}."
            )
        check_wrapped_model(model)
        check_choice("bn_mode", bn_mode, BN_MODES)
        parallel_episodes = check_int("parallel_episodes", parallel_episodes)
        self.model = model
        self.bn_mode = bn_mode
        self.parallel_episodes = parallel_episodes
        self._warned_jit_loop = False
        self._episode_loss_fn = None
        # Learned from the data at trace time; used by export and saved with
        # the build config.
        self._episode_spec = None
        if model.built:
            self.built = True

    @classmethod
    def from_preset(cls, name: str) -> MetaLearner:
        """A pretrained learner of this class, compiled and ready to adapt.

        The names are `keras_meta.presets.list_pretrained()`; a name of
        another class (e.g. `MAML.from_preset("protonet_omniglot")`) is an
        error that lists this class's names. See `keras_meta.presets`.

        Example:

        >>> import keras_meta as km
        >>> km.ProtoNet.from_preset("protonet_omniglot").bn_mode
        'running'
        """
        from keras_meta.pretrained import load_pretrained

        return load_pretrained(name, cls)

    # ------------------------------------------------------------------
    # Compiling (building and serialisation: _building.py).
    # ------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, **kwargs):
        """Compiles the learner; `loss` is the loss of both loops.

        Metrics are query metrics after adaptation. Takes the arguments of
        `keras.Model.compile`; when the wrapped model computes in float16
        (`keras.mixed_precision`), the optimizer is wrapped in a
        `keras.optimizers.LossScaleOptimizer` unless `auto_scale_loss=False`.
        """
        if loss is None:
            raise ValueError(
                "keras_meta learners need a `loss` in compile(): it is the "
                "loss of the inner (support) and outer (query) loop."
            )
        if kwargs.get("loss_weights") is not None:
            raise ValueError("`loss_weights` is not supported by meta-learners.")
        self._episode_loss_fn = _as_loss(loss)
        if kwargs.get("auto_scale_loss", True):
            optimizer = _precision.loss_scale_optimizer(optimizer, self.model)
        super().compile(optimizer=optimizer, loss=loss, **kwargs)

    def compile_from_config(self, config):
        # Keras skips compile_from_config for overridden compile(); ours only
        # adds the loss resolution, so restoring the compile state is safe.
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.built:
            self.optimizer.build(self.trainable_variables)

    # ------------------------------------------------------------------
    # Losses and forward passes shared by the algorithms.
    # ------------------------------------------------------------------
    def _require_loss(self):
        if self._episode_loss_fn is None:
            raise RuntimeError(
                "This learner has no loss yet: call `learner.compile(optimizer, "
                "loss=...)` first (the compiled loss is the adaptation loss)."
            )
        return self._episode_loss_fn

    def outer_loss(self, y_true, y_pred):
        """Query loss of one episode, scaled for tf.distribute like Keras's."""
        return self._require_loss()(y_true, y_pred)

    def inner_loss(self, y_true, y_pred):
        """Support loss of one episode: the compiled loss, never scaled.

        Under `tf.distribute`, Keras scales compiled losses by
        1/num_replicas so that summed gradients give the global mean; the
        inner loop runs per episode on one replica, so it must see the
        plain loss.
        """
        return _keras_compat.unscale_loss_for_distribution(self._require_loss()(y_true, y_pred))

    def forward(self, params, state, x, training):
        """Calls the wrapped model with the weights `params` and `state`.

        Returns `(outputs, new_state, regularization_loss)`; float16 and
        bfloat16 outputs (mixed precision) are cast to float32, so that
        losses, heads and metrics are computed in float32.
        """
        model = self.model
        with learner_batch_norm(fused=not self._needs_second_derivatives()):
            if _keras_compat.call_has_training_arg(model):
                outputs, state, losses = model.stateless_call(
                    list(params), list(state), x, training=training, return_losses=True
                )
            else:
                # stateless_call hands `training` to call(), which does not
                # take it; going through __call__ in the same stateless scope
                # still passes it on to inner layers such as BatchNorm.
                mapping = list(zip(model.trainable_variables, params)) + list(
                    zip(model.non_trainable_variables, state)
                )
                with keras.StatelessScope(state_mapping=mapping, collect_losses=True) as scope:
                    outputs = model(x, training=training)
                    losses = model.losses
                state = [scope.get_current_value(v) for v in model.non_trainable_variables]
        outputs = _precision.to_float32(check_single_output(model, outputs))
        reg = tf.add_n([tf.cast(v, outputs.dtype) for v in losses]) if losses else 0.0
        return outputs, list(state), reg

    def _needs_second_derivatives(self) -> bool:
        """Whether meta-training differentiates the model twice (second-order
        meta-gradients); such learners keep Keras's BatchNorm ops
        (keras_meta._moments explains why)."""
        return False

    def model_params(self):
        """Current values of the wrapped model's trainable weights.

        (The learner's own meta-learned weights, such as learned inner
        rates, are further `self.trainable_variables`.)
        """
        return [tf.convert_to_tensor(v) for v in self.model.trainable_variables]

    def model_state(self):
        """Current values of the wrapped model's non-trainable weights."""
        return [tf.convert_to_tensor(v) for v in self.model.non_trainable_variables]

    def state_variables(self):
        """The variables carried as `state` through the loop over episodes.

        A nest of variables (`tf.nest`). Default: the wrapped model's
        non-trainable variables (BatchNorm moving statistics), the `state`
        that `forward` takes. A learner with more state updated during
        meta-training (MAML's per-step BatchNorm statistics) returns a
        structure of its own, which its `adapt_and_predict` understands.
        """
        return self.model.non_trainable_variables

    def loop_state(self):
        """Current values of `state_variables()` (same structure)."""
        return tf.nest.map_structure(tf.convert_to_tensor, self.state_variables())

    def meta_forward(self, x, training: bool = False):
        """Predictions of the meta-learned model, without adaptation.

        What the exported `serve` endpoint computes. Default: the wrapped
        model with its current weights.
        """
        return self.forward(self.model_params(), self.model_state(), x, training)[0]

    def _layer_training(self, training: bool) -> bool:
        return bool(training) or self.bn_mode == "transductive"

    # ------------------------------------------------------------------
    # What an algorithm implements.
    # ------------------------------------------------------------------
    def adapt_and_predict(self, episode: Episode, state, training: bool):
        """Adapts on one episode's support set and predicts its query set.

        Args:
            episode: one episode (no leading B).
            state: the state carried through the loop over episodes (see
                `state_variables`; by default the wrapped model's
                non-trainable state, a list of tensors).
            training: `True` in meta-training (differentiable, `fit`
                settings), `False` in evaluation, prediction and export.

        Returns:
            `(query_predictions, new_state)`; the predictions must be
            differentiable with respect to `self.trainable_variables` when
            `training` is true.
        """
        raise NotImplementedError

    def episode_loss(self, episode: Episode, state):
        """Meta-training loss of one episode: `(loss, query_pred, state)`."""
        pred, state = self.adapt_and_predict(episode, state, training=True)
        return self.outer_loss(episode.query_y, pred), pred, state

    def episode_gradients(self, episode: Episode, state, weight, **options):
        """Meta-gradient of one episode, for `self.trainable_variables`.

        `weight` (1/B) is folded in before differentiation so that summing
        over episodes gives the gradient of the mean loss; `options` go to
        `episode_loss`.

        Returns `(gradients, loss, query_pred, state)`.
        """

        def scaled_loss():
            loss, pred, new_state = self.episode_loss(episode, state, **options)
            scaled = self.optimizer.scale_loss(loss * tf.cast(weight, loss.dtype))
            return scaled, loss, pred, new_state

        return _episode_loop.gradients(scaled_loss, self.trainable_variables)

    # ------------------------------------------------------------------
    # The loop over the episodes of a batch.
    # ------------------------------------------------------------------
    def _unpack(self, x, y=None, batched=True) -> EpisodeBatch | Episode:
        ep = check_episode_inputs(self, unpack_episodes(x, y, batched=batched), batched)
        self._record_spec(ep, batched)
        num_outputs = self._num_outputs()
        if num_outputs is not None and ep.is_classification:
            ep = ep._replace(support_y=check_label_range(ep.support_y, num_outputs, "support_y"))
            if ep.query_y is not None:
                ep = ep._replace(query_y=check_label_range(ep.query_y, num_outputs, "y (query_y)"))
        return ep

    def _record_spec(self, ep: EpisodeBatch | Episode, batched: bool):
        lead = 1 if batched else 0
        feature = tuple(ep.support_x.shape[lead + 1 :])
        label_shape = tuple(ep.support_y.shape[lead + 1 :])
        if None in feature or None in label_shape:
            return
        spec = {
            "input_shape": [int(d) for d in feature],
            "input_dtype": ep.support_x.dtype.name,
            "label_shape": [int(d) for d in label_shape],
            "label_dtype": ep.support_y.dtype.name,
        }
        self._episode_spec = spec
        self._build_model(feature, spec["input_dtype"])
        self.built = True

    def _num_outputs(self):
        if self.model.built and self._episode_spec:
            try:
                shape = self.model.compute_output_shape(
                    (None,) + tuple(self._episode_spec["input_shape"])
                )
                if isinstance(shape, (tuple, list)) and shape and isinstance(shape[-1], int):
                    return int(shape[-1])
            except Exception:  # noqa: BLE001 - the check is best-effort.
                return None
        return None

    def _pred_dtype(self):
        return "float64" if self.model.compute_dtype == "float64" else "float32"

    def _loop_episodes(self, batch: EpisodeBatch, fn, grads_like=()):
        """`_episode_loop.loop_over_episodes` with this learner's settings."""
        return _episode_loop.loop_over_episodes(
            batch,
            fn,
            self.loop_state(),
            grads_like=grads_like,
            dtype=self._pred_dtype(),
            parallel_episodes=self.parallel_episodes,
            unroll=self._unroll_episodes(batch.support_x.shape[0]),
        )

    def _unroll_episodes(self, static_b) -> bool:
        """Whether to unroll the loop over episodes (`should_unroll`); warns
        once when XLA gets a `tf.while_loop` instead."""
        jit = getattr(self, "jit_compile", False)
        unroll = _episode_loop.should_unroll(jit, static_b)
        if jit and not unroll and not self._warned_jit_loop:
            self._warned_jit_loop = True
            _episode_loop.warn_xla_while_loop(static_b)
        return unroll

    def _eval_fn(self, with_loss: bool):
        def fn(episode, state, weight):
            pred, _ = self.adapt_and_predict(episode, state, training=False)
            loss = self.outer_loss(episode.query_y, pred) if with_loss else tf.zeros((), pred.dtype)
            # Evaluation never changes the learner's state.
            return [], loss, pred, state

        return fn

    # ------------------------------------------------------------------
    # Keras hooks.
    # ------------------------------------------------------------------
    def call(self, inputs, training=False):
        """Query predictions after adapting on each episode's support set."""
        eps = self._unpack(inputs)
        _, _, preds, _ = self._loop_episodes(eps, self._eval_fn(with_loss=False))
        return preds

    def _reject_sample_weight(self, sample_weight):
        if sample_weight is not None:
            raise ValueError(
                "keras_meta learners do not take sample weights; weight "
                "episodes by building the dataset accordingly."
            )

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        self._reject_sample_weight(sample_weight)
        if y is None:
            raise ValueError("fit() needs the query targets: each batch must be (x, query_y).")
        eps = self._unpack(x, y)
        variables = self.trainable_variables
        grads, losses, preds, state = self._loop_episodes(
            eps, self.episode_gradients, grads_like=variables
        )
        self.optimizer.apply_gradients(zip(grads, variables))
        if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
            # A skipped (overflowed) step keeps the state as well as the weights.
            finite = _precision.all_finite(grads)
            state = tf.nest.map_structure(
                lambda new, old: tf.where(finite, new, old), state, self.loop_state()
            )
        state = _episode_loop.mean_over_replicas(state)
        tf.nest.map_structure(lambda v, s: v.assign(s), self.state_variables(), state)
        self._update_loss_tracker(losses)
        return self.compute_metrics(x, y, preds, sample_weight=None)

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        self._reject_sample_weight(sample_weight)
        eps = self._unpack(x, y)
        _, losses, preds, _ = self._loop_episodes(eps, self._eval_fn(with_loss=True))
        self._update_loss_tracker(losses)
        return self.compute_metrics(x, y, preds, sample_weight=None)

    def predict_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        return self(x, training=False)

    def _update_loss_tracker(self, losses):
        loss = tf.reduce_mean(losses)
        _keras_compat.loss_tracker(self).update_state(
            _keras_compat.unscale_loss_for_distribution(loss),
            sample_weight=tf.shape(losses)[0],
        )

    # ------------------------------------------------------------------
    # Model generator.
    # ------------------------------------------------------------------
    def adapt(self, support_x, support_y, steps: int | None = None) -> keras.Model:
        """Adapts to one task and returns a standalone `keras.Model`."""
        raise NotImplementedError

    def export(self, filepath, format="tf_saved_model", verbose=True, **kwargs):
        """Writes a SavedModel with an `adapt_and_predict` endpoint.

        The endpoint `adapt_and_predict(support_x, support_y, query_x)` takes
        one episode (no leading B), adapts inside the graph and returns the
        query predictions; `serve(x)` predicts with the meta-learned weights.
        Loading needs only TensorFlow (`tf.saved_model.load`).
        """
        from keras_meta.export import export_learner

        if format != "tf_saved_model":
            raise ValueError(
                "Learners export as format='tf_saved_model' only; received "
                f"{format!r}. Export an adapted model (learner.adapt(...)) for "
                "other formats."
            )
        return export_learner(self, filepath, verbose=verbose, **kwargs)
