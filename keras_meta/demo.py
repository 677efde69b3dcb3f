"""`keras-meta demo`: MAML on sinusoid regression; `keras-meta demo omniglot`.

`run_demo` (the default demo, no download): MAML on sinusoid regression, the
paper's protocol. `run_omniglot_demo`: the pretrained `protonet_omniglot`
learner (`keras_meta.presets`) adapted to a few characters it never saw.


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
import numpy as np

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


OMNIGLOT_PRESET = "protonet_omniglot"


def _omniglot_alphabet(data_dir, alphabet, rng):
    """One evaluation alphabet: `(images, labels, its classes, their names, alphabet)`."""
    from keras_meta import data

    x, y, info = data.omniglot(data_dir, split="evaluation", with_info=True)
    alphabets = sorted(set(info["alphabet"].tolist()))
    if alphabet is None:
        alphabet = alphabets[rng.integers(len(alphabets))]
    elif alphabet not in alphabets:
        raise ValueError(
            f"`alphabet` must be one of Omniglot's evaluation alphabets ({', '.join(alphabets)}); "
            f"received {alphabet!r}."
        )
    classes = np.flatnonzero(info["alphabet"] == alphabet)
    names = [f"{alphabet}/{info['character'][c]}" for c in classes]
    return x, y, classes, names, alphabet


def _pick(x, y, classes, names, ways, shots, queries, rng):
    """A `ways`-way episode from `classes` of `(x, y)`: support, query, class names."""
    if len(classes) < ways:
        raise ValueError(
            f"`ways` must be at most the {len(classes)} classes available; received ways={ways}."
        )
    chosen = rng.choice(len(classes), ways, replace=False)
    sx, sy, qx, qy = [], [], [], []
    for label, i in enumerate(chosen):
        images = np.flatnonzero(y == classes[i])
        if len(images) < shots + 1:
            raise ValueError(
                f"The class {names[i]!r} has {len(images)} images; the demo needs at least "
                f"{shots + 1} ({shots} support, 1 query)."
            )
        images = rng.permutation(images)
        take = images[shots : shots + queries]
        sx.append(x[images[:shots]])
        sy += [label] * shots
        qx.append(x[take])
        qy += [label] * len(take)
    chosen_names = [names[i] for i in chosen]
    return (np.concatenate(sx), np.asarray(sy, "int32"), np.concatenate(qx),
            np.asarray(qy, "int32"), chosen_names)


def _alphabet_accuracy(alphabet: str, ways: int, shots: int) -> dict | None:
    """The pretrained learner's measured accuracy within `alphabet`, if its
    metadata has it for episodes of this shape."""
    from keras_meta import pretrained

    measured = pretrained.get_metadata(OMNIGLOT_PRESET).get("evaluation_per_alphabet")
    if not measured or (measured["ways"], measured["shots"]) != (ways, shots):
        return None
    if alphabet not in measured["alphabets"]:
        return None
    entry = measured["alphabets"][alphabet]
    return {
        "accuracy": entry["accuracy"],
        "accuracy_ci95": entry["accuracy_ci95"],
        "episodes": measured["episodes"],
        "queries": measured["queries"],
    }


def run_omniglot_demo(
    data_dir: str | None = None,
    images: str | None = None,
    out_dir: str = "demo_output",
    alphabet: str | None = None,
    ways: int = 5,
    shots: int = 1,
    queries: int = 3,
    seed: int = 0,
    verbose: int = 1,
) -> dict:
    """Adapts the pretrained `protonet_omniglot` learner to unseen characters.

    Takes `ways` characters of one of Omniglot's 20 evaluation alphabets
    (never seen in meta-training) from `data_dir` (the official archives or
    their extracted folders), or `ways` classes of `images` (any folder with
    one sub-folder of character images per class, dark ink on a light
    background), adapts to `shots` images of each, classifies up to
    `queries` others, and writes `out_dir/omniglot_demo.png` (support
    images, queries, predicted vs true class) and `omniglot_demo.json`. With
    `data_dir`, the results also hold `alphabet_accuracy`: the learner's mean
    accuracy measured on many episodes of that alphabet (its metadata), to
    read one episode's result against (absent when the metadata has none for
    `ways`-way `shots`-shot episodes).

    Example:

    >>> results = run_omniglot_demo(data_dir="data/omniglot")  # doctest: +SKIP
    >>> results["accuracy"] > 0.8                              # doctest: +SKIP
    True
    """
    import keras_meta as km
    from keras_meta import validation
    from keras_meta.experiments.run_dir import writable_dir, write_json
    from keras_meta.plots import plot_classification_episode

    if (data_dir is None) == (images is None):
        raise ValueError(
            "Give exactly one of `data_dir` (the Omniglot folder) and `images` (a folder "
            f"of character images); received data_dir={data_dir!r}, images={images!r}."
        )
    if images is not None and alphabet is not None:
        raise ValueError(
            "`alphabet` picks an Omniglot evaluation alphabet and goes with `data_dir`; "
            f"received it with images={images!r}."
        )
    ways = validation.check_int("ways", ways, 2)
    shots = validation.check_int("shots", shots)
    queries = validation.check_int("queries", queries)
    rng = np.random.default_rng(validation.check_int("seed", seed, None))
    if data_dir is not None:
        x, y, classes, names, alphabet = _omniglot_alphabet(data_dir, alphabet, rng)
        source = f"Omniglot evaluation alphabet {alphabet}"
    else:
        x, y, names = km.data.image_folder(
            images, image_size=28, color_mode="grayscale", invert=True
        )
        classes = np.arange(len(names))
        source = f"the folder {os.fspath(images)}"
    sx, sy, qx, qy, chosen = _pick(x, y, classes, names, ways, shots, queries, rng)
    writable_dir(out_dir)

    learner = km.ProtoNet.from_preset(OMNIGLOT_PRESET)
    adapted = learner.adapt(sx, sy)
    predicted = np.argmax(np.asarray(adapted.predict(qx, verbose=0)), axis=-1)
    accuracy = float(np.mean(predicted == qy))
    short = [n.split("/")[-1] for n in chosen]
    plot = plot_classification_episode(
        sx, sy, qx, qy, predicted, os.path.join(out_dir, "omniglot_demo.png"),
        class_names=short,
        title=f"{OMNIGLOT_PRESET} adapted to {ways} characters of\n{source} ({shots}-shot): "
        f"{100 * accuracy:.0f}% of {len(qy)} queries right",
    )
    results = {
        "pretrained": OMNIGLOT_PRESET,
        "source": source,
        "alphabet": alphabet,
        "classes": chosen,
        "ways": ways,
        "shots": shots,
        "queries": int(len(qy)),
        "accuracy": accuracy,
        "seed": seed,
        "plot": plot,
    }
    expected = _alphabet_accuracy(alphabet, ways, shots) if data_dir is not None else None
    if expected is not None:
        results["alphabet_accuracy"] = expected
    write_json(os.path.join(out_dir, "omniglot_demo.json"), results)
    if verbose:
        print(f"Adapted {OMNIGLOT_PRESET} to {ways} classes of {source} "
              f"({shots} image(s) each): {100 * accuracy:.1f}% of {len(qy)} queries right.")
        if expected is not None:
            print(f"Its mean on {expected['episodes']} {ways}-way {shots}-shot episodes of "
                  f"{alphabet}: {100 * expected['accuracy']:.1f}% ± "
                  f"{100 * expected['accuracy_ci95']:.1f}% (95% CI).")
        print(f"Plot: {plot}")
    return results
