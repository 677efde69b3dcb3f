"""Every code block of README.md and docs/*.md runs as written (issue 12).

One case per markdown file (every `docs/*.md` is found by glob, so a new page is
covered without touching this file). A file's blocks run in order, in a fresh
temporary working directory, like the cells of a notebook:

- ```` ```python ```` blocks share one namespace per file. A block whose lines
  start with `>>>` is a doctest in that namespace (its output is checked).
- ```` ```bash ````, ```` ```sh ````, ```` ```shell ```` and ```` ```console ````
  blocks are shell commands (`$ ` prompts are dropped; in a console block, the
  lines without a prompt are output). `keras-meta ...` commands run in-process
  (`keras_meta.cli.main`) and must exit with status 0. The commands listed in
  NEVER_RUN are recognised and not run, for the reason given there; any other
  command fails the test, so that a new kind of command is a decision.
- Blocks without a language (```` ``` ````) and other languages are output,
  file trees and usage synopses: not code, not run.

A block may be preceded by one of these markers (an HTML comment, invisible
once rendered):

- `<!-- snippet: signature -->`: the block lists calls written as signatures
  (`km.MAML(model, inner_learning_rate=0.4, ...)`); each call is checked
  against the real callable: positional names in order, keyword defaults equal
  to the real defaults, every parameter listed unless the call has a literal
  `...` argument. Return annotations (`) -> Dataset`) are allowed.
- `<!-- snippet: skip (reason) -->`: an intentional fragment, not run. The
  reason is required. Keep these rare: prefer making the snippet complete.

Budgets. With KERAS_META_DOCS_BUDGET=small (the default here), the literals in
PYTHON_BUDGETS and the options in CLI_BUDGETS are rewritten before running,
so that the default suite stays short; KERAS_META_DOCS_BUDGET=full runs every
block as written. Paths to the data (PLACEHOLDERS) point to the real Omniglot
archives (tests/conftest.py's `omniglot_dir`); a file with such a path is
marked `real_data` and, without the archives, skips at its first block that
needs them (the blocks before it have run). Names of example inputs that the docs
use (FIXTURES, e.g. `my_images/`) are created in the working directory.
"""

from __future__ import annotations

import ast
import doctest
import inspect
import math
import os
import pathlib
import re
import shlex
import textwrap
from dataclasses import dataclass

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
BUDGET_ENV = "KERAS_META_DOCS_BUDGET"

# Files whose blocks take long enough to leave out of the default run. CPU
# seconds measured with small budgets on the 2-core development machine:
# README.md 35, algorithms.md 65 (mostly tracing nine learners), data.md 25,
# cli.md 130 (three Omniglot trainings).
SLOW = {"cli.md"}

SHELL_LANGUAGES = {"bash", "sh", "shell", "console"}

# Commands recognised in shell blocks and never run: prefix -> reason.
NEVER_RUN = {
    "pip": "installs packages; the test runs in the installed environment",
    "git": "needs a network and a remote",
    "python -m pytest": "the test suite itself",
    "python benchmarks/": "a benchmark on its full budget (minutes to hours)",
    "nvidia-smi": "needs a GPU",
    "tensorboard": "a server that does not exit",
    ".ci/run": "the whole CI run",
}

# Small budgets for python blocks: regex -> replacement (applied in order).
PYTHON_BUDGETS = [
    (r"\bepochs=\d+", "epochs=1"),
    (r"\bsteps_per_epoch=\d+", "steps_per_epoch=2"),
    (r"\bnum_episodes=\d+", "num_episodes=4"),
    (r"\.batch\((\d+)\)", lambda m: f".batch({min(int(m.group(1)), 4)})"),
    # Counts named before use (fit(steps_per_epoch=iterations)); epochs stay
    # (a page may print what its schedule reached).
    (r"(?m)^iterations = \d+$", "iterations = 2"),
    (r"(?m)^steps_per_epoch, epochs = \d+, ", "steps_per_epoch, epochs = 2, "),
]

# Small budgets for `keras-meta` commands: subcommand -> {option: value}, each
# option replaced where given and added where not.
CLI_BUDGETS = {
    "demo": {"--iterations": "2", "--eval-tasks": "2"},
    "train": {
        "--iterations": "2",
        "--steps-per-epoch": "1",
        "--meta-batch-size": "2",
        "--val-episodes": "2",
        "--eval-episodes": "2",
    },
    "evaluate": {"--episodes": "2"},
}

# Paths in the docs that stand for the real Omniglot folder (regex, checked in
# order; a path is matched as a whole, not as the tail of a longer one).
PLACEHOLDERS = [r"\.\./shared/data/omniglot", r"path/to/omniglot", r"data/omniglot"]
_PLACEHOLDER = re.compile(r"(?<![\w./-])(?:" + "|".join(PLACEHOLDERS) + r")(?![\w-])")

MARKER = re.compile(r"<!--\s*snippet:\s*(\w+)\s*(?:\((.*?)\))?\s*-->")


@dataclass
class Block:
    file: str
    line: int  # the line of the opening fence, 1-based
    language: str
    code: str
    marker: str | None = None
    reason: str | None = None

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


def parse_blocks(text: str, file: str = "<md>") -> list[Block]:
    """The fenced blocks of a markdown text, with the marker before each."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        fence = re.match(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)", lines[i])
        if not fence:
            i += 1
            continue
        indent, ticks, language = fence.groups()
        start, body = i, []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(ticks):
            body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i])
            i += 1
        i += 1
        previous = next((ln for ln in reversed(lines[:start]) if ln.strip()), "")
        marker = MARKER.search(previous)
        blocks.append(
            Block(
                file,
                start + 1,
                language.lower(),
                "\n".join(body) + "\n",
                marker.group(1) if marker else None,
                marker.group(2) if marker else None,
            )
        )
    return blocks


def small_budget() -> bool:
    value = os.environ.get(BUDGET_ENV, "small")
    if value not in ("small", "full"):
        raise ValueError(f"{BUDGET_ENV} must be 'small' or 'full'; received {value!r}.")
    return value == "small"


def shrink_python(code: str) -> str:
    for pattern, replacement in PYTHON_BUDGETS:
        code = re.sub(pattern, replacement, code)
    return code


def needs_data(code: str) -> bool:
    return bool(_PLACEHOLDER.search(code))


def with_data(code: str, data_dir: pathlib.Path) -> str:
    return _PLACEHOLDER.sub(lambda _: data_dir.as_posix(), code)


# ---------------------------------------------------------------------------
# Shell blocks.
# ---------------------------------------------------------------------------
def shell_commands(block: Block) -> list[str]:
    """The commands of a shell block: continuations joined, prompts and
    comments dropped, `&&` chains split."""
    lines = block.code.splitlines()
    if block.language == "console":
        lines = [ln[2:] for ln in lines if ln.startswith("$ ")]
    else:
        lines = [ln[2:] if ln.startswith("$ ") else ln for ln in lines]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    commands, pending = [], ""
    for line in joined.splitlines():
        try:
            words = shlex.split(pending + line, comments=True)
        except ValueError:  # a quoted string that goes on over the next line
            pending += line + "\n"
            continue
        pending = ""
        if not words:
            continue
        while "&&" in words:
            commands.append(shlex.join(words[: words.index("&&")]))
            words = words[words.index("&&") + 1 :]
        commands.append(shlex.join(words))
    return commands


def never_run_reason(command: str) -> str | None:
    for prefix, reason in NEVER_RUN.items():
        if command == prefix.rstrip("/ ") or command.startswith(prefix):
            return reason
    return None


def shrink_cli(argv: list[str]) -> list[str]:
    # `demo omniglot` adapts a pretrained learner: no budget to shrink.
    pretrained_demo = argv[:2] == ["demo", "omniglot"]
    options = {} if pretrained_demo else CLI_BUDGETS.get(argv[0], {})
    argv = list(argv)
    for option, value in options.items():
        if option in argv:
            argv[argv.index(option) + 1] = value
        else:
            argv += [option, value]
    return argv


def run_shell(block: Block, small: bool) -> list[str]:
    """Runs the `keras-meta` commands of a block; returns those not run."""
    from keras_meta import cli

    not_run = []
    for command in shell_commands(block):
        reason = never_run_reason(command)
        if reason is not None:
            not_run.append(f"{command!r}: {reason}")
            continue
        words = shlex.split(command)
        if words[0] == "keras-meta":
            argv = words[1:]
        elif words[:3] == ["python", "-m", "keras_meta.cli"]:
            argv = words[3:]
        else:
            raise AssertionError(
                f"{block.where}: command {command!r} is neither `keras-meta ...` nor in "
                f"NEVER_RUN of tests/test_docs.py; run it or list it there with a reason."
            )
        if small:
            argv = shrink_cli(argv)
        try:
            status = cli.main(argv)
        except SystemExit as exit_:
            status = exit_.code
        assert status in (0, None), f"{block.where}: `keras-meta {' '.join(argv)}` -> {status}"
    return not_run


# ---------------------------------------------------------------------------
# Python blocks.
# ---------------------------------------------------------------------------
def run_python(block: Block, code: str, namespace: dict) -> None:
    if code.lstrip().startswith(">>>"):
        test = doctest.DocTestParser().get_doctest(code, namespace, block.where, block.file, 0)
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
        report = []
        runner.run(test, out=report.append, clear_globs=False)
        assert not runner.failures, f"{block.where}: doctest failed:\n" + "".join(report)
        return
    try:
        exec(compile(code, block.where, "exec"), namespace)
    except Exception as error:
        raise AssertionError(
            f"{block.where}: python block failed with {type(error).__name__}: {error}\n"
            + textwrap.indent(code, "    | ")
        ) from error


def _parameters(target) -> dict[str, inspect.Parameter]:
    """Named parameters of a callable; for a keras_meta class whose `__init__`
    takes `**kwargs`, those of its keras_meta base classes too."""
    params = {}
    classes = target.__mro__ if inspect.isclass(target) else [None]
    for cls in classes:
        if cls is not None and not (cls.__module__ or "").startswith("keras_meta"):
            break
        function = target if cls is None else cls.__init__
        if cls is not None and "__init__" not in vars(cls):
            continue
        signature = inspect.signature(function)
        for name, param in signature.parameters.items():
            if name != "self":
                params.setdefault(name, param)
        if not any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()):
            break
    return params


def check_signatures(block: Block, namespace: dict) -> int:
    """Checks every call of a signature block; returns how many."""
    code = re.sub(r"\)\s*->[^\n#]*", ")", block.code)
    tree = ast.parse(code, block.where)
    env = {"pi": math.pi, "inf": math.inf, **namespace}
    checked = 0
    for statement in tree.body:
        call = getattr(statement, "value", None)
        if not isinstance(call, ast.Call):
            raise AssertionError(f"{block.where}: not a call: {ast.unparse(statement)}")
        where = f"{block.where} `{ast.unparse(call.func)}`"
        target = eval(compile(ast.Expression(call.func), block.where, "eval"), env)
        own = inspect.signature(target.__init__ if inspect.isclass(target) else target)
        params = _parameters(target)
        positional = [
            n
            for n, p in own.parameters.items()
            if n != "self" and p.kind is p.POSITIONAL_OR_KEYWORD
        ]
        abbreviated = False
        listed = set()
        for i, arg in enumerate(call.args):
            if isinstance(arg, ast.Constant) and arg.value is Ellipsis:
                abbreviated = True
            elif isinstance(arg, ast.Name):
                assert i < len(positional) and positional[i] == arg.id, (
                    f"{where}: positional argument {i} is named {arg.id!r} in the docs, "
                    f"{positional[i] if i < len(positional) else None!r} in the code"
                )
                listed.add(arg.id)
            else:
                abbreviated = True  # an example value, e.g. cifar_fs("train")
        for keyword in call.keywords:
            if keyword.arg is None:  # **fit_kwargs
                assert any(p.kind is p.VAR_KEYWORD for p in own.parameters.values()), (
                    f"{where}: the docs show **{ast.unparse(keyword.value)}, the code has none"
                )
                continue
            assert keyword.arg in params, (
                f"{where}: the docs list {keyword.arg!r}, which is not a parameter "
                f"(parameters: {sorted(params)})"
            )
            documented = eval(compile(ast.Expression(keyword.value), block.where, "eval"), env)
            actual = params[keyword.arg].default
            assert actual is not inspect.Parameter.empty and documented == actual, (
                f"{where}: the docs give {keyword.arg}={documented!r}, the code's default is "
                f"{'(none)' if actual is inspect.Parameter.empty else repr(actual)}"
            )
            listed.add(keyword.arg)
        if not abbreviated:
            required = [
                n
                for n, p in own.parameters.items()
                if n != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
            ]
            missing = [n for n in required if n not in listed]
            assert not missing, f"{where}: parameters missing from the docs: {missing}"
        checked += 1
    return checked


# ---------------------------------------------------------------------------
# Fixtures named in the docs.
# ---------------------------------------------------------------------------
def _image_folder(root: pathlib.Path, classes: int, per_class: int, seed: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c in range(classes):
        folder = root / f"class_{c:02d}"
        folder.mkdir(parents=True)
        pattern = rng.random((28, 28)) > 0.7
        for i in range(per_class):
            noisy = pattern ^ (rng.random((28, 28)) > 0.95)
            Image.fromarray(np.where(noisy, 0, 255).astype(np.uint8)).save(folder / f"{i}.png")


# Name in the docs -> how it is made in the working directory.
FIXTURES = {
    # keras-meta train --dataset folder --split-sizes 0.6,0.2,0.2 --ways 5 --shots 1
    # --queries 5: 5 classes of 6 images in the smallest split.
    "my_images": lambda root: _image_folder(root, classes=25, per_class=6, seed=0),
    # keras-meta adapt ... --support my_alphabet/: one image of each of 5 classes.
    "my_alphabet": lambda root: _image_folder(root, classes=5, per_class=1, seed=1),
}


# ---------------------------------------------------------------------------
# The cases.
# ---------------------------------------------------------------------------
def markdown_files() -> list[pathlib.Path]:
    return [REPO / "README.md"] + sorted((REPO / "docs").glob("*.md"))


def has_code(text: str) -> bool:
    return any(
        b.marker or b.language in {"python", "py"} | SHELL_LANGUAGES for b in parse_blocks(text)
    )


def cases():
    """One case per file with code blocks (a page of prose has nothing to run)."""
    for path in markdown_files():
        text = path.read_text()
        if not has_code(text):
            continue
        marks = [pytest.mark.slow] if path.name in SLOW else []
        if needs_data(text):
            marks.append(pytest.mark.real_data)
        yield pytest.param(path, marks=marks, id=path.name)


def run_markdown(text: str, name: str, work: pathlib.Path, small: bool, data_dir) -> list[str]:
    """Runs the blocks of a markdown text in `work` (the working directory);
    `data_dir()` gives the Omniglot folder or skips. Returns the commands not
    run, with their reasons."""
    for fixture, make in FIXTURES.items():
        if re.search(rf"(?<![\w/]){fixture}\b", text):
            make(work / fixture)
    namespace = {"__name__": "__docs__"}
    ran, not_run, data = 0, [], None
    for block in parse_blocks(text, name):
        if block.marker == "skip":
            assert block.reason, f"{block.where}: `snippet: skip` needs a reason in parentheses"
            continue
        if block.marker == "signature":
            import keras_meta

            check_signatures(block, {"km": keras_meta, "keras_meta": keras_meta, **namespace})
            ran += 1
            continue
        assert block.marker is None, f"{block.where}: unknown marker `snippet: {block.marker}`"
        if block.language not in {"python", "py"} | SHELL_LANGUAGES:
            continue
        code = block.code
        if needs_data(code):
            if data is None:
                try:
                    data = data_dir()
                except pytest.skip.Exception as skip:
                    pytest.skip(f"{block.where} and after: {skip.msg}")
            code = with_data(code, data)
        if block.language in SHELL_LANGUAGES:
            not_run += run_shell(Block(block.file, block.line, block.language, code), small)
        else:
            run_python(block, shrink_python(code) if small else code, namespace)
        ran += 1
    assert ran or not_run, f"{name}: every code block is marked `snippet: skip`"
    return not_run


@pytest.fixture(scope="session")
def docs_keras_home(tmp_path_factory):
    """One KERAS_HOME for the pages of a session (not the user's): the pages
    that load Omniglot share its decoded cache instead of decoding it again."""
    return tmp_path_factory.mktemp("docs_keras_home")


@pytest.mark.parametrize("path", list(cases()))
def test_code_blocks_run(path, tmp_path, monkeypatch, capsys, request, docs_keras_home):
    monkeypatch.setenv("MPLBACKEND", os.environ.get("MPLBACKEND", "Agg"))
    monkeypatch.setenv("KERAS_HOME", str(docs_keras_home))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    name = path.relative_to(REPO).as_posix()
    not_run = run_markdown(
        path.read_text(),
        name,
        work,
        small_budget(),
        lambda: request.getfixturevalue("omniglot_dir"),
    )
    with capsys.disabled():
        for line in not_run:
            print(f"\n{name}: not run: {line}", end="")


# ---------------------------------------------------------------------------
# The runner's own rules, on small inline documents.
# ---------------------------------------------------------------------------
def test_parser_finds_blocks_markers_and_languages():
    text = "\n".join(
        [
            "Intro",
            "```python",
            "x = 1",
            "```",
            "<!-- snippet: skip (needs a GPU) -->",
            "```bash",
            "keras-meta demo",
            "```",
            "```",
            "output",
            "```",
        ]
    )
    blocks = parse_blocks(text, "t.md")
    assert [(b.line, b.language, b.marker, b.reason) for b in blocks] == [
        (2, "python", None, None),
        (6, "bash", "skip", "needs a GPU"),
        (9, "", None, None),
    ]
    assert blocks[0].code == "x = 1\n"


def test_shell_commands_and_budgets():
    block = Block(
        "t.md",
        1,
        "bash",
        'pip install -e ".[cpu]" && keras-meta demo  # quick\n'
        "keras-meta train --preset p \\\n    --iterations 5000 --out r\n",
    )
    commands = shell_commands(block)
    assert commands == [
        "pip install -e '.[cpu]'",
        "keras-meta demo",
        "keras-meta train --preset p --iterations 5000 --out r",
    ]
    assert never_run_reason(commands[0]) == NEVER_RUN["pip"]
    assert never_run_reason(commands[1]) is None
    assert shrink_cli(["train", "--iterations", "5000", "--out", "r"]) == [
        "train",
        "--iterations",
        "2",
        "--out",
        "r",
        "--steps-per-epoch",
        "1",
        "--meta-batch-size",
        "2",
        "--val-episodes",
        "2",
        "--eval-episodes",
        "2",
    ]
    quoted = Block("t.md", 1, "bash", 'export A=\'{"x": 1,\n  "y": 2}\'\npython t.py\n')
    assert shell_commands(quoted) == ['export \'A={"x": 1,\n  "y": 2}\'', "python t.py"]
    console = Block("t.md", 1, "console", "$ keras-meta presets\nmaml-sinusoid ...\n")
    assert shell_commands(console) == ["keras-meta presets"]
    with pytest.raises(AssertionError, match="neither `keras-meta ...` nor in NEVER_RUN"):
        run_shell(Block("t.md", 3, "bash", "rm -rf runs\n"), small=True)
    assert shrink_python("fit(d.batch(32), epochs=10, steps_per_epoch=500)") == (
        "fit(d.batch(4), epochs=1, steps_per_epoch=2)"
    )
    assert shrink_python("multi_step_loss_epochs=10") == "multi_step_loss_epochs=10"
    assert shrink_python("iterations = 100\nfit(steps_per_epoch=iterations)") == (
        "iterations = 2\nfit(steps_per_epoch=iterations)"
    )
    assert shrink_python("steps_per_epoch, epochs = 10, 3") == "steps_per_epoch, epochs = 2, 3"


def test_budget_variable(monkeypatch):
    monkeypatch.delenv(BUDGET_ENV, raising=False)
    assert small_budget()
    monkeypatch.setenv(BUDGET_ENV, "full")
    assert not small_budget()
    monkeypatch.setenv(BUDGET_ENV, "tiny")
    with pytest.raises(ValueError, match="KERAS_META_DOCS_BUDGET must be 'small' or 'full'"):
        small_budget()


def test_placeholders_are_whole_paths():
    assert with_data('omniglot("path/to/omniglot")', pathlib.Path("/d")) == 'omniglot("/d")'
    assert (
        with_data("--data-dir data/omniglot --out r", pathlib.Path("/d")) == "--data-dir /d --out r"
    )
    assert with_data("../shared/data/omniglot", pathlib.Path("/d")) == "/d"
    assert not needs_data("my_data/omniglot_x")


def test_a_failing_python_block_names_its_line():
    block = Block("t.md", 7, "python", "x = undefined_name\n")
    with pytest.raises(AssertionError, match=r"t\.md:7: python block failed with NameError"):
        run_python(block, block.code, {})
    doc = Block("t.md", 9, "python", ">>> 1 + 1\n3\n")
    with pytest.raises(AssertionError, match=r"t\.md:9: doctest failed"):
        run_python(doc, doc.code, {})


def test_signature_check_catches_a_wrong_default_and_a_missing_parameter():
    import keras_meta as km

    def check(code):
        return check_signatures(Block("t.md", 1, "python", code), {"km": km})

    assert (
        check(
            "km.data.sinusoid(shots=10, queries=10, seed=None, num_episodes=None,\n"
            "    amplitude_range=(0.1, 5.0), phase_range=(0, pi), input_range=(-5, 5))\n"
            "km.data.split_classes(...) -> ClassSplit\n"
        )
        == 2
    )
    with pytest.raises(AssertionError, match="the docs give shots=5, the code's default is 10"):
        check("km.data.sinusoid(..., shots=5)\n")
    with pytest.raises(
        AssertionError, match=r"parameters missing from the docs: \['input_range'\]"
    ):
        check(
            "km.data.sinusoid(shots=10, queries=10, seed=None, num_episodes=None,\n"
            "    amplitude_range=(0.1, 5.0), phase_range=(0, pi))\n"
        )
    with pytest.raises(AssertionError, match="positional argument 0 is named 'net'"):
        check("km.MAML(net, ...)\n")
    # keras_meta base classes' parameters are found through **kwargs.
    assert check("km.MAML(..., bn_mode='transductive', adapt_layers=None)\n") == 1


def test_a_document_runs_in_order_with_its_markers(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = "\n".join(
        [
            "```python",
            "import keras_meta as km",
            "n = 3",
            "```",
            "<!-- snippet: signature -->",
            "```python",
            "km.data.split_classes(labels_or_num_classes, sizes, seed=0) -> ClassSplit",
            "```",
            "<!-- snippet: skip (a fragment: `undefined` is the reader's) -->",
            "```python",
            "undefined",
            "```",
            "```console",
            "$ keras-meta presets maml-sinusoid",
            '{"algorithm": "maml", ...}',
            "$ pip install keras_meta",
            "```",
            "```python",
            "split = km.data.split_classes(10, (0.7, 0.3), seed=0)",
            "```",
            "```python",
            ">>> len(split['train']) + n",
            "10",
            "```",
        ]
    )
    not_run = run_markdown(text, "t.md", tmp_path, small=True, data_dir=None)
    assert not_run == [f"'pip install keras_meta': {NEVER_RUN['pip']}"]
    with pytest.raises(AssertionError, match=r"t\.md:2: `snippet: skip` needs a reason"):
        run_markdown("<!-- snippet: skip -->\n```python\nx\n```\n", "t.md", tmp_path, True, None)
    with pytest.raises(AssertionError, match=r"unknown marker `snippet: later`"):
        run_markdown("<!-- snippet: later -->\n```python\nx\n```\n", "t.md", tmp_path, True, None)
    with pytest.raises(pytest.skip.Exception, match=r"t\.md:1 and after: no data"):
        run_markdown(
            '```python\nload("path/to/omniglot")\n```\n',
            "t.md",
            tmp_path,
            True,
            lambda: pytest.skip("no data"),
        )
