"""One worker of the loopback tests in test_multi_worker.py (run as a script).

Usage: `_worker.py MODE OUT` with `TF_CONFIG` set (see `keras_meta.distribute`);
MODE is `step` (record the first episodes of each replica, then one SGD(1.0)
step: the weight change is minus the meta-gradient; then evaluate) or `train` (EPOCHS epochs
of STEPS steps with Adam and a backup per epoch; it resumes from the backup
when one is there). Each worker writes its files to OUT with its index in the
name. With KM_TEST_EXIT_AFTER_BATCHES=N the worker dies (os._exit, no clean-up)
at the end of its N-th training batch, as a crashed machine would.
"""

import json
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402

from keras_meta import distribute  # noqa: E402

# Shared with the test, which rebuilds the same learner and stream in-process.
SEED = 7
GLOBAL_BATCH = 4
SHOTS = 5
EPOCHS = 4
STEPS = 2
EXIT_CODE = 17


def make_learner(learning_rate=1.0, adam=False):
    import keras

    import keras_meta as km

    keras.utils.set_random_seed(SEED)
    net = keras.Sequential(
        [keras.Input((1,)), keras.layers.Dense(16, "tanh"), keras.layers.Dense(1)]
    )
    learner = km.MAML(net, inner_learning_rate=0.05, inner_steps=2)
    optimizer = (keras.optimizers.Adam if adam else keras.optimizers.SGD)(learning_rate)
    learner.compile(optimizer=optimizer, loss="mse")
    return learner


def episodes():
    import keras_meta as km

    return km.data.sinusoid(shots=SHOTS, queries=SHOTS, seed=SEED)


def validation_episodes():
    import keras_meta as km

    return km.data.sinusoid(shots=SHOTS, queries=SHOTS, seed=SEED + 1, num_episodes=8)


def weights(learner):
    return {f"w{i}": np.asarray(v.numpy()) for i, v in enumerate(learner.trainable_variables)}


class ExitAfter:
    """A callback factory: dies at the end of the `n`-th batch of this run."""

    @staticmethod
    def make(n):
        import keras

        class Exit(keras.callbacks.Callback):
            seen = 0

            def on_train_batch_end(self, batch, logs=None):
                Exit.seen += 1
                if Exit.seen == n:
                    sys.stdout.flush()
                    os._exit(EXIT_CODE)

        return Exit()


def main(mode, out):
    strategy = distribute.make_strategy("multi-worker")
    index = distribute.worker_index(strategy)
    with strategy.scope():
        learner = make_learner(**({"learning_rate": 0.01, "adam": True} if mode == "train" else {}))

    if mode == "step":
        np.savez(os.path.join(out, f"initial-{index}.npz"), **weights(learner))
        # The episodes of this worker's replica, identified by their query targets.
        data = distribute.distribute_episodes(strategy, episodes(), GLOBAL_BATCH)
        seen = []
        for _, batch in zip(range(3), data):
            (local,) = strategy.experimental_local_results(batch[1])
            seen.append(local.numpy())
        np.save(os.path.join(out, f"episodes-{index}.npy"), np.stack(seen))
        data = distribute.distribute_episodes(strategy, episodes(), GLOBAL_BATCH)
        learner.fit(data, epochs=1, steps_per_epoch=1, verbose=0)
        np.savez(os.path.join(out, f"final-{index}.npz"), **weights(learner))
        # Evaluation (as with validation_data) reduces its logs across workers too.
        validation = distribute.distribute_episodes(strategy, validation_episodes(), GLOBAL_BATCH)
        loss = learner.evaluate(validation, verbose=0)
        with open(os.path.join(out, f"evaluate-{index}.json"), "w") as f:
            json.dump({"loss": float(loss)}, f)
        return

    backup = distribute.worker_backup(strategy, os.path.join(out, "backup"))
    start = distribute.resume_step(strategy, backup, STEPS)
    if start == 0:
        np.savez(os.path.join(out, f"initial-{index}.npz"), **weights(learner))
    callbacks = [backup]
    if os.environ.get("KM_TEST_EXIT_AFTER_BATCHES"):
        callbacks.append(ExitAfter.make(int(os.environ["KM_TEST_EXIT_AFTER_BATCHES"])))
    data = distribute.distribute_episodes(strategy, episodes(), GLOBAL_BATCH, initial_step=start)
    history = learner.fit(
        data, epochs=EPOCHS, steps_per_epoch=STEPS, callbacks=callbacks, verbose=0
    )
    np.savez(os.path.join(out, f"final-{index}.npz"), **weights(learner))
    with open(os.path.join(out, f"run-{index}.json"), "w") as f:
        json.dump({"start": start, "epochs_run": len(history.history["loss"])}, f)


if __name__ == "__main__":
    main(*sys.argv[1:])
