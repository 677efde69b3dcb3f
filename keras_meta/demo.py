"""`keras-meta demo`: MAML on sinusoid regression, the paper's protocol.

Finn et al. (2017), section 5.1: an MLP 1-40-40-1 with ReLU
(`keras_meta.models.mlp`), K=10 support points per task, one inner SGD step of
0.01, meta-batch 25 tasks, Adam 1e-3,
70,000 meta-iterations; evaluated by K=5-shot adaptation MSE after 1 and 10
steps. The demo runs the same protocol with a smaller budget by default so
that it ends within a few minutes on two CPU cores, and prints our numbers
beside the paper's.
"""

from __future__ import annotations

import os
import time

import keras

PAPER_MSE = {1: 0.67, 10: 0.35}  # MAML paper, K=5, 70k meta-iterations
DEFAULT_ITERATIONS = 15000
EVAL_SHOTS = 5
EVAL_QUERIES = 100


def run_demo(
    iterations: int | None = None,
    out_dir: str = "demo_output",
    seed: int = 0,
    eval_tasks: int = 600,
    verbose: int = 1,
) -> dict:
    """Meta-trains MAML on sinusoid tasks, evaluates, plots and exports.

    Writes into `out_dir`: `results.json`, `adaptation.png` (a few tasks
    before/after adaptation), `learner.keras` and `adapted_model/` (the
    SavedModel of the model adapted to one new task).

    Example:

    >>> results = run_demo(iterations=50, out_dir="demo_output", eval_tasks=20,
    ...                    verbose=0)  # doctest: +SKIP
    >>> sorted(results["mse"])                              # doctest: +SKIP
    ['1', '10']
    """
    import keras_meta as km
    from keras_meta import validation
    from keras_meta.evaluation import evaluate
    from keras_meta.experiments.run_dir import writable_dir, write_json
    from keras_meta.plots import plot_regression_adaptation

    iterations = DEFAULT_ITERATIONS if iterations is None else iterations
    iterations = validation.check_int("iterations", iterations)
    eval_tasks = validation.check_int("eval_tasks", eval_tasks, 2)
    writable_dir(out_dir)
    keras.utils.set_random_seed(seed)

    learner = km.MAML(km.models.mlp(), inner_learning_rate=0.01, inner_steps=1)
    learner.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    train = km.data.sinusoid(shots=10, queries=10, seed=seed).batch(25).prefetch(4)
    test = km.data.sinusoid(
        shots=EVAL_SHOTS, queries=EVAL_QUERIES, seed=10_000 + seed, num_episodes=eval_tasks
    )

    say = print if verbose else (lambda *a, **k: None)
    say(
        f"MAML on sinusoid regression: {iterations} meta-iterations of 25 tasks "
        "(K=10, inner lr 0.01, 1 inner step, Adam 1e-3)"
    )
    # Epochs only pace the progress bar; the budget is rounded up to a
    # whole number of them.
    epochs = max(1, min(10, iterations // 500))
    steps_per_epoch = -(-iterations // epochs)
    iterations = epochs * steps_per_epoch
    start = time.time()
    learner.fit(
        train,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        shuffle=False,
        verbose=verbose,
    )
    train_seconds = time.time() - start

    mse = {}
    for k in (1, 10):
        r = evaluate(learner, test, num_episodes=eval_tasks, inner_steps=k)
        mse[str(k)] = {"mean": r["loss"], "ci95": r["loss_ci95"]}

    plot_path = plot_regression_adaptation(
        learner,
        test,
        os.path.join(out_dir, "adaptation.png"),
        num_tasks=4,
        steps=10,
        x_range=(-5.0, 5.0),
    )
    x, _ = next(iter(test.take(1)))
    adapted = learner.adapt(x["support_x"], x["support_y"], steps=10)
    adapted_path = os.path.join(out_dir, "adapted_model")
    adapted.export(adapted_path, verbose=False)
    learner.save(os.path.join(out_dir, "learner.keras"))

    results = {
        "protocol": {
            "train_shots": 10,
            "eval_shots": EVAL_SHOTS,
            "eval_queries": EVAL_QUERIES,
            "meta_batch_size": 25,
            "inner_learning_rate": 0.01,
            "train_inner_steps": 1,
            "meta_optimizer": "Adam(1e-3)",
            "iterations": iterations,
            "eval_tasks": eval_tasks,
            "seed": seed,
        },
        "mse": mse,
        "paper_mse": {str(k): v for k, v in PAPER_MSE.items()},
        "paper_iterations": 70000,
        "train_seconds": round(train_seconds, 1),
        "plot": plot_path,
        "adapted_model": adapted_path,
    }
    write_json(os.path.join(out_dir, "results.json"), results)

    say("")
    say(f"K={EVAL_SHOTS} adaptation MSE on {eval_tasks} fixed tasks (mean ± 95% CI):")
    say(f"{'steps':>5}  {'keras_meta':>16}  {'MAML paper':>10}")
    for k in (1, 10):
        ours = f"{mse[str(k)]['mean']:.3f} ± {mse[str(k)]['ci95']:.3f}"
        say(f"{k:>5}  {ours:>16}  {PAPER_MSE[k]:>10.2f}")
    say(f"(ours: {iterations} iterations in {train_seconds:.0f} s; paper: 70,000 iterations)")
    say(f"Plot: {plot_path}\nAdapted SavedModel: {adapted_path}")
    return results
