"""Package data: the pretrained learners of `keras_meta.presets`.

One folder per learner, `model.weights.h5` (float32 weights only) and
`metadata.json`, written by `benchmarks/pretrain.py`; load them with
`keras_meta.presets.load_pretrained(name)` or `Learner.from_preset(name)`.
"""
