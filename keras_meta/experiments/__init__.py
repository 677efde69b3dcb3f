"""The application layer: run configurations, protocols, run directories.

The library (`keras_meta.learners`, `.data`, `.inner_loop`, `.evaluation`,
`.export`, `.callbacks`, `.models`) never imports this package; the
`keras-meta` command line (`keras_meta.cli`) is a thin layer over it.

- `config`: `RunConfig`, the typed, self-validating configuration of a run;
- `protocols`: the published protocols as data, and the fields' choice lists;
- `datasets`: what each dataset needs (data folder, class splits, image defaults);
- `builders`: the model, learner and meta-optimizer of a configuration;
- `sources`: the training, validation and test episodes of a configuration;
- `run_dir`: the files of a run directory;
- `runs`: train, evaluate and adapt a run directory;
- `options`: the `train` command-line options, generated from `RunConfig`.

Example:

>>> from keras_meta import experiments
>>> experiments.RunConfig.from_protocol("maml-sinusoid").is_regression
True
"""

from keras_meta.experiments.config import RunConfig
from keras_meta.experiments.protocols import get_protocol, list_protocols

__all__ = ["RunConfig", "get_protocol", "list_protocols"]
