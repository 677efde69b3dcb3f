"""`MetaLearner`: the `keras.Model` that every meta-learning algorithm extends.

The base class owns what all algorithms share: episode unpacking and
validation, the loop over the B episodes of a batch (a `tf.while_loop`, so a
step is one graph whatever B is, and memory grows with one episode, not B),
`train_step`/`test_step`/`predict_step`, the compiled loss used by both
loops, BatchNorm modes, persistence and export. An algorithm implements
`adapt_episode` (and, if it is not differentiated through, `episode_gradients`).
"""

from __future__ import annotations

import logging

import keras
import tensorflow as tf
from keras.src import tree
from keras.src.losses import loss as loss_module
from keras.src.losses.losses import LossFunctionWrapper
from keras.src.trainers.data_adapters import data_adapter_utils

from keras_meta._moments import exact_moments
from keras_meta.episode import Episodes, check_label_range, unpack_episodes
from keras_meta.input_checks import check_episode_inputs, check_single_output, check_wrapped_model

BN_MODES = ("transductive", "running")

logger = logging.getLogger("keras_meta")

# Episodes of a meta-batch whose graphs may run at the same time in the
# episode loop (`tf.while_loop(parallel_iterations=...)`). Each episode's ops
# are small, so running a few at once keeps the cores busy; results do not
# change (gradients and state are still accumulated in episode order).
DEFAULT_PARALLEL_EPISODES = 4
# Under XLA, meta-batches up to this size are unrolled (see _unroll_episodes).
MAX_UNROLLED_EPISODES = 8


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
        return LossFunctionWrapper(resolved, name=getattr(resolved, "__name__", None))
    raise ValueError(f"Could not interpret the loss {loss!r}.")


class MetaLearner(keras.Model):
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

    Subclasses implement `adapt_episode`. A learner that does not adapt at
    all (a transfer-learning baseline) is four lines:

    >>> import keras, keras_meta as km
    >>> class NoAdaptation(km.MetaLearner):
    ...     def adapt_episode(self, episode, state, training):
    ...         pred, state, _ = self.forward(
    ...             self.meta_params(), state, episode.query_x, training)
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
        if bn_mode not in BN_MODES:
            raise ValueError(f"Expected `bn_mode` to be one of {BN_MODES}; received {bn_mode!r}.")
        if (
            isinstance(parallel_episodes, bool)
            or not isinstance(parallel_episodes, int)
            or parallel_episodes < 1
        ):
            raise ValueError(
                f"Expected `parallel_episodes` to be an int >= 1; received {parallel_episodes!r}."
            )
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

    # ------------------------------------------------------------------
    # Building, compiling, serialisation.
    # ------------------------------------------------------------------
    def build(self, input_shape=None):
        if isinstance(input_shape, dict) and "support_x" in input_shape:
            feature_shape = tuple(input_shape["support_x"])[2:]
            self._build_model(feature_shape)
        self.built = True

    def _build_model(self, feature_shape, dtype="float32"):
        if self.model.built and self.model.weights:
            self._maybe_build_meta_weights()
            return
        # A symbolic call builds every kind of model (a subclassed model's
        # `build(shape)` may mark it built without creating its weights);
        # init_scope escapes any graph being traced, where Keras cannot
        # create variables.
        with tf.init_scope():
            try:
                self.model(keras.KerasTensor((None,) + tuple(feature_shape), dtype))
            except Exception as e:
                raise ValueError(
                    "Could not build the wrapped model for inputs of shape "
                    f"(None, {', '.join(map(str, feature_shape))}). Build it "
                    "yourself (call it once on a batch) before wrapping it. "
                    f"Error: {e}"
                ) from e
            self._maybe_build_meta_weights()

    def build_meta_weights(self):
        """Creates the learner's own weights (e.g. learned inner rates).

        Called once, as soon as the wrapped model has its weights (at
        construction when it is built already, else when the learner is
        built), so that the weights exist before the optimizer is built and
        before a `.keras` file's weights are loaded. Default: none.
        """

    def _maybe_build_meta_weights(self):
        # Subclasses call this at the end of __init__, once their
        # configuration (which build_meta_weights reads) is set.
        if getattr(self, "_meta_weights_built", False) or not (
            self.model.built and self.model.weights
        ):
            return
        self._meta_weights_built = True
        with tf.init_scope():
            self.build_meta_weights()

    def get_build_config(self):
        return {"episode_spec": self._episode_spec}

    def build_from_config(self, config):
        spec = config.get("episode_spec")
        if spec:
            self._episode_spec = spec
            self._build_model(spec["input_shape"], spec.get("input_dtype", "float32"))
        self.built = True

    def compile(self, optimizer="rmsprop", loss=None, **kwargs):
        """Compiles the learner; `loss` is the loss of both loops.

        Metrics are query metrics after adaptation. Takes the arguments of
        `keras.Model.compile`.
        """
        if loss is None:
            raise ValueError(
                "keras_meta learners need a `loss` in compile(): it is the "
                "loss of the inner (support) and outer (query) loop."
            )
        if kwargs.get("loss_weights") is not None:
            raise ValueError("`loss_weights` is not supported by meta-learners.")
        self._episode_loss_fn = _as_loss(loss)
        super().compile(optimizer=optimizer, loss=loss, **kwargs)

    def compile_from_config(self, config):
        # Keras skips compile_from_config for overridden compile(); ours only
        # adds the loss resolution, so restoring the compile state is safe.
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "model": keras.saving.serialize_keras_object(self.model),
                "bn_mode": self.bn_mode,
                "parallel_episodes": self.parallel_episodes,
            }
        )
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        model = keras.saving.deserialize_keras_object(
            config.pop("model"), custom_objects=custom_objects
        )
        return cls(model=model, **config)

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
        return loss_module.unscale_loss_for_distribution(self._require_loss()(y_true, y_pred))

    def forward(self, params, state, x, training):
        """Calls the wrapped model with the weights `params` and `state`.

        Returns `(outputs, new_state, regularization_loss)`.
        """
        model = self.model
        with exact_moments():
            if model._call_has_training_arg:
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
        outputs = check_single_output(model, outputs)
        reg = tf.add_n([tf.cast(v, outputs.dtype) for v in losses]) if losses else 0.0
        return outputs, list(state), reg

    def meta_params(self):
        """Current values of the wrapped model's trainable weights."""
        return [tf.convert_to_tensor(v) for v in self.model.trainable_variables]

    def state_variables(self):
        """The variables carried as `state` through the loop over episodes.

        Default: the wrapped model's non-trainable variables (BatchNorm
        moving statistics). A learner with extra state updated during
        meta-training (e.g. per-step BatchNorm statistics) appends its own;
        its `forward` then receives that longer state.
        """
        return self.model.non_trainable_variables

    def model_state(self):
        """Current values of `state_variables()`."""
        return [tf.convert_to_tensor(v) for v in self.state_variables()]

    def _layer_training(self, training: bool) -> bool:
        return bool(training) or self.bn_mode == "transductive"

    # ------------------------------------------------------------------
    # What an algorithm implements.
    # ------------------------------------------------------------------
    def adapt_episode(self, episode: Episodes, state, training: bool):
        """Adapts on one episode's support set and predicts its query set.

        Args:
            episode: one episode (no leading B).
            state: the wrapped model's non-trainable state (list of tensors).
            training: `True` in meta-training (differentiable, `fit`
                settings), `False` in evaluation, prediction and export.

        Returns:
            `(query_predictions, new_state)`; the predictions must be
            differentiable with respect to `self.trainable_variables` when
            `training` is true.
        """
        raise NotImplementedError

    def episode_loss(self, episode: Episodes, state):
        """Meta-training loss of one episode: `(loss, query_pred, state)`."""
        pred, state = self.adapt_episode(episode, state, training=True)
        return self.outer_loss(episode.query_y, pred), pred, state

    def episode_gradients(self, episode: Episodes, state, weight, **options):
        """Meta-gradient of one episode, for `self.trainable_variables`.

        `weight` (1/B) is folded in before differentiation so that summing
        over episodes gives the gradient of the mean loss; `options` go to
        `episode_loss`.

        Returns `(gradients, loss, query_pred, state)`.
        """
        variables = self.trainable_variables
        with tf.GradientTape() as tape:
            loss, pred, state = self.episode_loss(episode, state, **options)
            scaled = self.optimizer.scale_loss(loss * tf.cast(weight, loss.dtype))
        grads = tape.gradient(scaled, variables)
        # Zeros for weights the loss does not use; TensorFlow's own
        # UnconnectedGradients.ZERO fails on Keras variables (string dtype).
        grads = [
            tf.zeros(v.shape, v.dtype) if g is None else tf.convert_to_tensor(g)
            for v, g in zip(variables, grads)
        ]
        return grads, loss, pred, state

    # ------------------------------------------------------------------
    # The loop over the episodes of a batch.
    # ------------------------------------------------------------------
    def _unpack(self, x, y=None, batched=True) -> Episodes:
        ep = check_episode_inputs(self, unpack_episodes(x, y, batched=batched), batched)
        self._record_spec(ep, batched)
        num_outputs = self._num_outputs()
        if num_outputs is not None and ep.is_classification:
            ep = ep._replace(support_y=check_label_range(ep.support_y, num_outputs, "support_y"))
            if ep.query_y is not None:
                ep = ep._replace(query_y=check_label_range(ep.query_y, num_outputs, "y (query_y)"))
        return ep

    def _record_spec(self, ep: Episodes, batched: bool):
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

    def _loop_episodes(self, eps: Episodes, fn, grads_like=None):
        """Runs `fn` over the episodes of `eps` in a `tf.while_loop`.

        `fn(episode, state, weight) -> (grads or [], loss, pred, state)`.
        Returns `(summed_grads, losses [B], preds [B, ...], final_state)`.
        """
        static_b = eps.support_x.shape[0]
        b = tf.shape(eps.support_x)[0] if static_b is None else static_b
        dtype = self._pred_dtype()
        weight = 1.0 / tf.cast(b, dtype)
        grads0 = [tf.zeros(v.shape, v.dtype) for v in (grads_like or [])]
        state0 = self.model_state()

        def step(i, grads, state):
            g, loss, pred, new_state = fn(eps.episode(i), state, weight)
            grads = [a + tf.cast(d, a.dtype) for a, d in zip(grads, g)]
            new_state = [tf.cast(tf.stop_gradient(s), s0.dtype) for s, s0 in zip(new_state, state)]
            return grads, new_state, tf.cast(loss, dtype), tf.cast(pred, dtype)

        if self._unroll_episodes(static_b):
            grads, state, losses, preds = grads0, state0, [], []
            for i in range(static_b):
                grads, state, loss, pred = step(i, grads, state)
                losses.append(loss)
                preds.append(pred)
            return grads, tf.stack(losses), tf.stack(preds), state

        loss_ta = tf.TensorArray(dtype, size=b)
        pred_ta = tf.TensorArray(dtype, size=b)

        def body(i, grads, state, loss_ta, pred_ta):
            grads, state, loss, pred = step(i, grads, state)
            return i + 1, grads, state, loss_ta.write(i, loss), pred_ta.write(i, pred)

        _, grads, state, loss_ta, pred_ta = tf.while_loop(
            lambda i, *_: i < b,
            body,
            (tf.constant(0), grads0, state0, loss_ta, pred_ta),
            parallel_iterations=self.parallel_episodes,
        )
        return grads, loss_ta.stack(), pred_ta.stack(), state

    def _unroll_episodes(self, static_b) -> bool:
        """Whether the loop over episodes is unrolled (XLA with a small static B).

        XLA on CPU runs a while loop whose body holds convolution gradients
        (the inner loop) 10-30x slower than the same ops outside a loop, and
        compiling an unrolled meta-batch takes minutes past a few episodes
        (docs/performance.md). So with XLA a static B up to
        `MAX_UNROLLED_EPISODES` is unrolled; otherwise the loop stays and a
        warning names the cost.
        """
        if not getattr(self, "jit_compile", False):
            return False
        if static_b is not None and static_b <= MAX_UNROLLED_EPISODES:
            return True
        if not self._warned_jit_loop and not tf.config.list_physical_devices("GPU"):
            self._warned_jit_loop = True
            size = "of unknown size" if static_b is None else f"of {static_b} episodes"
            logger.warning(
                "jit_compile=True with a meta-batch %s: the episodes run in a "
                "tf.while_loop, which XLA on CPU executes 10-30x slower than "
                "without XLA when the loop differentiates through convolutions. "
                "Compile with jit_compile=False on CPU, or use a static meta-batch "
                "of at most %d episodes (`.batch(B, drop_remainder=True)`), which "
                "is unrolled.",
                size,
                MAX_UNROLLED_EPISODES,
            )
        return False

    def _eval_fn(self, with_loss: bool):
        def fn(episode, state, weight):
            pred, _ = self.adapt_episode(episode, state, training=False)
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

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Under tf.distribute, Keras builds from the first batch reduced with
        # MEAN across replicas, which turns integer labels into floats; the
        # episode would then look like a regression one. Build from the first
        # replica's data instead, which keeps the dtypes.
        strategy = getattr(self, "_distribute_strategy", None)
        if strategy is None or iterator is None:
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
        for _, _, it in iterator:
            batch = next(it)
            data_batch = tree.map_structure(
                lambda v: (
                    strategy.experimental_local_results(v)[0]
                    if isinstance(v, tf.distribute.DistributedValues)
                    else v
                ),
                batch,
            )
            break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    def _reject_sample_weight(self, sample_weight):
        if sample_weight is not None:
            raise ValueError(
                "keras_meta learners do not take sample weights; weight "
                "episodes by building the dataset accordingly."
            )

    def train_step(self, data):
        x, y, sample_weight = data_adapter_utils.unpack_x_y_sample_weight(data)
        self._reject_sample_weight(sample_weight)
        if y is None:
            raise ValueError("fit() needs the query targets: each batch must be (x, query_y).")
        eps = self._unpack(x, y)
        variables = self.trainable_variables
        grads, losses, preds, state = self._loop_episodes(
            eps, self.episode_gradients, grads_like=variables
        )
        self.optimizer.apply_gradients(zip(grads, variables))
        state = self._sync_state_across_replicas(state)
        for v, s in zip(self.state_variables(), state):
            v.assign(s)
        self._update_loss_tracker(losses)
        return self.compute_metrics(x, y, preds, sample_weight=None)

    def _sync_state_across_replicas(self, state):
        """The mean over replicas of each replica's float state.

        Under tf.distribute each replica carries the state (BatchNorm moving
        statistics) through its own episodes. The state variables are
        mirrored without an aggregation, so assigning each replica's value
        would leave the copies out of sync (reads, saves and exports see the
        first replica's, which saw only its share of the episodes); their
        mean is assigned on every replica instead.
        """
        context = tf.distribute.get_replica_context()
        if context is None or context.num_replicas_in_sync == 1:
            return state
        return [
            context.all_reduce(tf.distribute.ReduceOp.MEAN, s) if s.dtype.is_floating else s
            for s in state
        ]

    def test_step(self, data):
        x, y, sample_weight = data_adapter_utils.unpack_x_y_sample_weight(data)
        self._reject_sample_weight(sample_weight)
        eps = self._unpack(x, y)
        _, losses, preds, _ = self._loop_episodes(eps, self._eval_fn(with_loss=True))
        self._update_loss_tracker(losses)
        return self.compute_metrics(x, y, preds, sample_weight=None)

    def predict_step(self, data):
        x, _, _ = data_adapter_utils.unpack_x_y_sample_weight(data)
        return self(x, training=False)

    def _update_loss_tracker(self, losses):
        loss = tf.reduce_mean(losses)
        self._loss_tracker.update_state(
            loss_module.unscale_loss_for_distribution(loss),
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
