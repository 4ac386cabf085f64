"""The documentation runs and says what the code does: README.md, CONTRIBUTING.md, docs/*.md, docs/quickstart.ipynb.

- Every ```python block runs, the blocks of one file in order in one namespace, in a fresh folder that holds the
  files the text names (`photo.jpg`: the packaged sample photo; `photos/`: eight of the test photos). What the
  text does with pretrained weights runs on random ones, and `construct` runs fewer steps, by these documented
  substitutions (nothing downloads; the run stays short):
    * ``weights="imagenet"`` is replaced by ``weights=None`` in the block's text (seeded random weights), and
      torchvision's ``googlenet(weights="DEFAULT")`` by its random-weight constructor;
    * ``dv.construct`` (wherever the library refers to it) runs at most `CONSTRUCT_STEPS` steps.
- A bare expression followed by a comment that starts with a Python literal (``r.projections.shape  # (9, 256,
  256, 3)``) must evaluate to that literal; ``...`` inside a list or tuple stands for any run of items. A comment
  that starts with ``Name(field=...)`` must be the value's repr. Other comments are prose.
- Every `deepvis` command of a ```bash block or an inline code span names a subcommand that exists and only
  flags its ``--help`` lists, with a listed value where the flag has choices; `python -m benchmarks` likewise;
  `python some/script.py` names a file of the repository; `-m MARKER` a marker of pyproject.toml. The README's
  set-up commands are the ones .ci/run runs.
- The README's transcript (a ```text block starting with ``$ deepvis``) is what that command prints.
- Relative links point to files of the repository.
- The notebook runs top to bottom on random weights and small sizes (its parameter cell replaced).
"""

from __future__ import annotations

import ast
import contextlib
import functools
import io
import re
import shlex
import shutil
import subprocess
import sys
import tokenize
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import deepvis_jax as dv
from deepvis_jax import cli

REPO = Path(__file__).resolve().parents[1]
DOCS = sorted([REPO / "README.md", REPO / "CONTRIBUTING.md", *(REPO / "docs").glob("*.md")])
NOTEBOOK = REPO / "docs" / "quickstart.ipynb"
PHOTOS = REPO / "tests" / "data" / "photos"
CONSTRUCT_STEPS = 1
SUBSTITUTIONS = [('weights="imagenet"', "weights=None"),
                 ('googlenet(weights="DEFAULT")', "googlenet(weights=None, aux_logits=False, init_weights=False)")]


def _name(path: Path) -> str:
    return str(path.relative_to(REPO))


# --------------------------------------------------------------------------------------------------------------
# Markdown: fenced blocks, inline code, links
# --------------------------------------------------------------------------------------------------------------

FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[\w-]*)\s*$")


def blocks(path: Path) -> list[tuple[str, int, str]]:
    """(language, line number of the block's first line, text) of every fenced block; indented fences (inside a
    list item) lose their indentation."""
    out, lines, i = [], path.read_text().splitlines(), 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if m is None:
            i += 1
            continue
        indent, lang, start = len(m["indent"]), m["lang"], i + 1
        i += 1
        while not re.match(r"^ *```\s*$", lines[i]):
            i += 1
        out.append((lang, start + 1, "\n".join(ln[indent:] for ln in lines[start:i])))
        i += 1
    return out


def prose(path: Path) -> str:
    """The file's text outside fenced blocks."""
    text, keep, fenced = path.read_text().splitlines(), [], False
    for ln in text:
        if re.match(r"^ *```", ln):
            fenced = not fenced
        elif not fenced:
            keep.append(ln)
    return "\n".join(keep)


# --------------------------------------------------------------------------------------------------------------
# Python blocks
# --------------------------------------------------------------------------------------------------------------


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A fresh folder with the files the docs name; no persistent compilation cache, no torch cache; JAX's float64
    switch as it was (a guide turns it on)."""
    import jax

    x64 = jax.config.jax_enable_x64
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(cli.CACHE_ENV, "off")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    Image.fromarray(dv.sample_image()).save(tmp_path / "photo.jpg", quality=95)
    (tmp_path / "photos").mkdir()
    for f in sorted(PHOTOS.glob("*.jpg"))[::4]:
        shutil.copy(f, tmp_path / "photos" / f.name)
    yield tmp_path
    jax.config.update("jax_enable_x64", x64)


@pytest.fixture
def short_construct(monkeypatch):
    """`construct` with at most CONSTRUCT_STEPS steps, patched wherever deepvis_jax refers to it."""
    from deepvis_jax._src.optvis import construct as module

    original = module.construct

    @functools.wraps(original)
    def construct(*args, steps=None, **kwargs):
        return original(*args, steps=min(steps or CONSTRUCT_STEPS, CONSTRUCT_STEPS), **kwargs)

    patched = [name for name, mod in list(sys.modules.items())
               if name.split(".")[0] == "deepvis_jax" and getattr(mod, "construct", None) is original]  # fmt: skip
    assert "deepvis_jax" in patched, "dv.construct is not the function the fixture patches"
    for name in patched:
        monkeypatch.setattr(sys.modules[name], "construct", construct)


def substituted(code: str) -> str:
    for old, new in SUBSTITUTIONS:
        code = code.replace(old, new)
    return code


def comments(code: str) -> dict[int, str]:
    """Line number -> the text of the comment ending that line."""
    return {t.start[0]: t.string[1:].strip() for t in tokenize.generate_tokens(io.StringIO(code).readline)
            if t.type == tokenize.COMMENT}  # fmt: skip


def _closing(text: str) -> int:
    """Index just past the bracket that closes text[0]'s bracket (quotes respected), or -1."""
    depth, quote = 0, None
    for i, ch in enumerate(text):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth == 0:
                return i + 1
    return -1


def claim(comment: str):
    """What a comment claims the value is: ("literal", value), ("repr", text) or None (prose)."""
    if not comment:
        return None
    if re.match(r"[A-Z]\w*\(", comment):
        end = _closing(comment[comment.index("(") :])
        return ("repr", comment[: comment.index("(") + end]) if end > 0 else None
    if comment[0] in "([{'\"":
        end = _closing(comment) if comment[0] in "([{" else comment.find(comment[0], 1) + 1
        text = comment[:end] if end > 0 else ""
    else:
        text = re.match(r"[^\s;:,]*", comment)[0]
    try:
        return ("literal", ast.literal_eval(text))
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None


def matches(value, expected) -> bool:
    """`value` equals `expected`; an Ellipsis item of an expected list or tuple stands for any run of items."""
    if isinstance(expected, (list, tuple)):
        if hasattr(value, "tolist"):
            value = value.tolist()
        if not isinstance(value, (list, tuple)):
            return False
        value = list(value)
        parts = [[]]
        for e in expected:
            parts.append([]) if e is Ellipsis else parts[-1].append(e)
        if len(parts) == 1:
            return len(value) == len(expected) and all(matches(v, e) for v, e in zip(value, expected))
        head, *middle, tail = parts
        if len(value) < len(head) + len(tail) or not matches(value[: len(head)], head):
            return False
        if tail and not matches(value[len(value) - len(tail) :], tail):
            return False
        rest = value[len(head) : len(value) - len(tail)]
        for part in middle:  # each middle part in order, anywhere in what is left
            at = next((i for i in range(len(rest) - len(part) + 1) if matches(rest[i : i + len(part)], part)), None)
            if at is None:
                return False
            rest = rest[at + len(part) :]
        return True
    if hasattr(value, "item") and np.ndim(value) == 0:
        value = value.item()
    return type(value) is type(expected) and value == expected or (
        isinstance(expected, float) and isinstance(value, float) and np.isclose(value, expected))  # fmt: skip


def run_python(code: str, filename: str, first_line: int, namespace: dict) -> int:
    """Run a block statement by statement; check each bare expression's commented claim. Returns the number of
    claims checked."""
    tree = ast.parse(code, filename)
    ast.increment_lineno(tree, first_line - 1)
    notes = {first_line - 1 + k: v for k, v in comments(code).items()}
    checked = 0
    for stmt in tree.body:
        if isinstance(stmt, ast.Expr):
            value = eval(compile(ast.Expression(stmt.value), filename, "eval"), namespace)
            what = claim(notes.get(stmt.end_lineno, ""))
            where = f"{filename}:{stmt.end_lineno}"
            if what is not None and what[0] == "literal":
                assert matches(value, what[1]), f"{where}: the text says {what[1]!r}, the code gives {value!r}"
                checked += 1
            elif what is not None:
                assert repr(value) == what[1], f"{where}: the text says {what[1]}, the code gives {value!r}"
                checked += 1
        else:
            exec(compile(ast.Module([stmt], []), filename, "exec"), namespace)
    return checked


def _python_docs() -> list:
    return [p for p in DOCS if any(lang == "python" for lang, _, _ in blocks(p))]


@pytest.mark.parametrize("path", _python_docs(), ids=_name)
def test_python_blocks_run(path, workdir, short_construct):
    namespace: dict = {"__name__": "__docs__"}
    for lang, line, code in blocks(path):
        if lang == "python":
            run_python(substituted(code), str(path), line, namespace)


def test_claims_are_checked():
    """The claim checker on hand-made cases: equal, ellipsis runs, repr, prose, and a wrong claim fails."""
    ns = {"np": np}
    code = ("np.zeros((9, 4)).shape   # (9, 4)\n['a', 'b', 'c', 'd']   # ['a', ..., 'd']\n"
            "[1, 2, 3, 4, 5]   # [1, ..., 3, ..., 5]\n"
            "dv.receptive_field('alexnet', 'conv1')  # ReceptiveField(size=11, stride=4, offset=-2)\n"
            "np.arange(3)   # [0, 1, 2]: the indices\nnp.float32(2.5)   # the scores, not a claim\n")  # fmt: skip
    assert run_python(code, "case", 1, {**ns, "dv": dv}) == 5
    for wrong in ("np.zeros((9, 4)).shape   # (9, 5)", "[1, 2, 3]   # [1, ..., 4]", "[1, 2]   # [1, 2, ...,  3]",
                  "'conv3'   # 'conv4'", "(1, 2)   # [1, 2, 3]"):  # fmt: skip
        with pytest.raises(AssertionError, match="the text says"):
            run_python(wrong, "case", 1, dict(ns))


# --------------------------------------------------------------------------------------------------------------
# Commands: the CLI's --help, benchmarks, scripts, markers
# --------------------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def cli_help(command: str | None) -> str | None:
    """`deepvis [command] --help`, or None when the command does not exist."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(([command] if command else []) + ["--help"])
        except SystemExit as e:  # argparse's exit, when main lets it through
            code = e.code
    return out.getvalue() if code == 0 else None


@functools.lru_cache(maxsize=None)
def benchmarks_help() -> str:
    return subprocess.run([sys.executable, "-m", "benchmarks", "--help"], cwd=REPO, capture_output=True,
                          text=True, check=True).stdout  # fmt: skip


def options(help_text: str) -> dict[str, set[str] | None]:
    """Flag -> its choices (None: any value) as a --help text lists them."""
    out: dict[str, set[str] | None] = {}
    for m in re.finditer(r"(?<![\w-])(--[a-z][a-z0-9-]*)(?: \{([^}]*)\})?", help_text):
        if m[2]:
            out[m[1]] = set(m[2].split(","))
        else:
            out.setdefault(m[1], None)
    return out


def check_flags(tokens: list[str], opts: dict, where: str) -> None:
    for i, tok in enumerate(tokens):
        if not tok.startswith("--"):
            continue
        flag = tok.split("=")[0]
        assert flag in opts, f"{where}: {flag} is not an option of `{' '.join(tokens[:2])}` (see its --help)"
        value = tok.split("=", 1)[1] if "=" in tok else (tokens[i + 1] if i + 1 < len(tokens) else "")
        if opts[flag] and value and not value.startswith("-") and not value.isupper():
            for v in value.split("|"):
                assert v in opts[flag], f"{where}: {flag} {v}: not one of {sorted(opts[flag])}"


def check_command(tokens: list[str], where: str) -> bool:
    """Check one command line (already split); False when it is not one this test knows."""
    while tokens and re.match(r"^[A-Z_]+=", tokens[0]):  # VAR=value prefixes
        tokens = tokens[1:]
    if not tokens:
        return False
    if tokens[0] == "deepvis":
        command = tokens[1] if len(tokens) > 1 and not tokens[1].startswith("-") else None
        if command is not None and command.isupper():  # deepvis COMMAND --help
            return True
        text = cli_help(command)
        assert text is not None, f"{where}: `deepvis {command}` is not a deepvis command"
        check_flags(tokens, options(text), where)
        return True
    if tokens[:3] == ["python", "-m", "benchmarks"]:
        opts = options(benchmarks_help())
        check_flags(tokens, opts, where)
        only = tokens.index("--only") + 1 if "--only" in tokens else len(tokens)
        for name in tokens[only:]:
            if name.startswith("-") or name.isupper():
                break
            assert name in opts["--only"], f"{where}: no benchmark {name!r}; there are {sorted(opts['--only'])}"
        return True
    if tokens[:3] == ["python", "-m", "pytest"]:
        if "-m" in tokens[3:]:
            marker = tokens[3:][tokens[3:].index("-m") + 1]
            assert f'"{marker}:' in (REPO / "pyproject.toml").read_text(), f"{where}: no pytest marker {marker!r}"
        for t in tokens[3:]:
            if t.startswith("tests/"):
                assert (REPO / t.split("::")[0]).exists(), f"{where}: {t} does not exist"
        return True
    if tokens[0] == "python" and len(tokens) > 1 and tokens[1].endswith(".py"):
        assert (REPO / tokens[1]).is_file(), f"{where}: {tokens[1]} is not a file of the repository"
        return True
    return False


def shell_commands(code: str) -> list[tuple[int, list[str]]]:
    """(line offset, tokens) of each simple command of a bash block: continuations joined, comments dropped,
    split at &&, ; and |."""
    out, pending, start = [], "", 0
    for k, line in enumerate(code.splitlines()):
        if not pending:
            start = k
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        line, pending = pending + line, ""
        line = line[2:] if line.startswith("$ ") else line
        tokens = shlex.split(line, comments=True)
        command: list[str] = []
        for t in tokens + [";"]:
            if t in ("&&", ";", "|", "||"):
                if command:
                    out.append((start, command))
                command = []
            else:
                command.append(t)
    return out


@pytest.mark.parametrize("path", DOCS, ids=_name)
def test_commands_exist(path):
    checked = 0
    for lang, line, code in blocks(path):
        if lang in ("bash", "sh", "console"):
            for k, tokens in shell_commands(code):
                checked += check_command(tokens, f"{_name(path)}:{line + k}")
    for span in re.findall(r"`((?:deepvis|python -m (?:benchmarks|pytest)) [^`]*)`", prose(path)):
        tokens = [t for t in re.sub(r"[\[\]…]|\.\.\.", " ", span).split()]
        checked += check_command(tokens, f"{_name(path)}: `{span}`")
    if path.name in ("README.md", "cli.md", "CONTRIBUTING.md"):
        assert checked >= 3, f"{_name(path)} should show its commands; found {checked}"


def test_commands_are_checked():
    """The command checker on hand-made lines: good ones pass, a wrong flag, value or subcommand fails."""
    assert check_command(["deepvis", "visualize", "--layer", "3", "--method", "guided|gradient"], "case")
    assert check_command(["deepvis", "COMMAND", "--help"], "case")
    assert check_command(["python", "-m", "benchmarks", "--quick", "--only", "construct", "atlas"], "case")
    assert not check_command(["pip", "install", "-e", "."], "case")
    for wrong in (["deepvis", "visualize", "--layers", "3"], ["deepvis", "visualize", "--method", "guide"],
                  ["deepvis", "visualise"], ["python", "-m", "benchmarks", "--only", "nothing"],
                  ["python", "-m", "pytest", "-m", "fast"], ["python", "docs/missing.py"]):  # fmt: skip
        with pytest.raises(AssertionError):
            check_command(wrong, "case")


def _cli_options() -> dict[str, dict[str, str]]:
    """Command -> {option: its help text} of every `deepvis` subcommand (hidden options and --help left out)."""
    import argparse

    sub = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {name: {o: " ".join(str(a.help).split()) for a in p._actions if a.help != argparse.SUPPRESS
                   for o in a.option_strings if o.startswith("--") and o != "--help"}
            for name, p in sub.choices.items()}  # fmt: skip


def test_cli_doc_lists_every_option():
    """docs/cli.md names every option of every command: in the command's own section, or, for an option that
    several commands share with the same help text, in "Options every command shares" (an option with its own
    meaning in one command, such as convert's --weights, is described in that command's section)."""
    sections = {s.split("\n", 1)[0]: s for s in re.split(r"^## ", (REPO / "docs" / "cli.md").read_text(), flags=re.M)}
    shared_text = sections["Options every command shares"]
    commands = _cli_options()
    helps: dict[tuple[str, str], int] = {}
    for opts in commands.values():
        for o, h in opts.items():
            helps[o, h] = helps.get((o, h), 0) + 1
    missing = []
    for name, opts in commands.items():
        own = sections.get(f"`deepvis {name}`", "")
        for o, h in opts.items():
            text = own + (shared_text if helps[o, h] > 1 else "")
            if not re.search(re.escape(o) + r"(?![\w-])", text):
                missing.append(f"deepvis {name} {o}")
    assert not missing, f"docs/cli.md does not mention: {', '.join(missing)}"


def test_readme_setup_is_what_ci_runs():
    """.ci/run installs and tests exactly as the README's set-up block says."""
    readme = REPO / "README.md"
    setup = next(code for lang, _, code in blocks(readme) if lang == "bash" and "pip install" in code)
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    for line in setup.splitlines():
        assert line.strip() in ci, f"README's set-up command {line.strip()!r} is not a line of .ci/run"


def test_readme_transcript(workdir, capsys):
    """The README's ```text transcript: the command prints those lines (``...`` skips lines; numbers to 1e-3)."""
    readme = REPO / "README.md"
    text = next(code for lang, _, code in blocks(readme) if lang == "text" and code.startswith("$ deepvis"))
    command, *expected = text.splitlines()
    assert cli.main(shlex.split(command[2:])[1:]) == 0
    out, err = capsys.readouterr()
    actual = err.splitlines() + out.splitlines()
    i = 0
    for k, want in enumerate(expected):
        if want.strip() == "...":
            nxt = expected[k + 1] if k + 1 < len(expected) else None
            while i < len(actual) and (nxt is None or not _same_line(actual[i], nxt)):
                i += 1
            continue
        assert i < len(actual) and _same_line(actual[i], want), f"README transcript: expected {want!r}, got " \
            f"{actual[i] if i < len(actual) else 'nothing'!r}\nwhole output:\n" + "\n".join(actual)  # fmt: skip
        i += 1
    assert i == len(actual), "the command prints more than the transcript shows:\n" + "\n".join(actual[i:])


def _same_line(actual: str, want: str) -> bool:
    a, w = actual.split(), want.split()
    if len(a) != len(w):
        return False
    for x, y in zip(a, w):
        if re.fullmatch(r"-?\d+\.\d+", y):
            if not re.fullmatch(r"-?\d+\.\d+", x) or not np.isclose(float(x), float(y), rtol=1e-3):
                return False
        elif x != y:
            return False
    return True


# --------------------------------------------------------------------------------------------------------------
# Links
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", DOCS, ids=_name)
def test_relative_links_resolve(path):
    for target in re.findall(r"\]\(([^)\s]+)\)", prose(path)):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        file = (path.parent / target.split("#")[0]).resolve()
        assert file.exists(), f"{_name(path)} links to {target}, which does not exist"


# --------------------------------------------------------------------------------------------------------------
# The notebook
# --------------------------------------------------------------------------------------------------------------

NOTEBOOK_PARAMETERS = """\
ARCH, WEIGHTS = "alexnet", None    # random weights: nothing to download
LAYER, FILTER = 3, 88              # the original class's example
IMAGE_SIZE = 128
CONSTRUCT_SIZE, CONSTRUCT_STEPS = 64, 1
"""


def test_notebook_runs(workdir):
    """docs/quickstart.ipynb top to bottom in a fresh kernel, its parameter cell replaced by NOTEBOOK_PARAMETERS
    (random AlexNet, small sizes). Its own cells assert that the functional core reproduces the Visualizer's
    numbers."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "the notebook needs exactly one cell tagged 'parameters'"
    tagged[0].source = NOTEBOOK_PARAMETERS
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}
                            ).execute()  # fmt: skip
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 3, "the notebook shows the activation grid, the projections and a constructed image"


# --------------------------------------------------------------------------------------------------------------
# Placeholders: a doc is finished text
# --------------------------------------------------------------------------------------------------------------

# TODO-style words anywhere in prose, or an all-caps identifier with an underscore (FAMILY_MATRIX, a template's
# slot) outside inline code that no source file names (an environment variable the code reads is a real name)
_UNFINISHED = re.compile(r"\b(?:TODO|TBD|FIXME|XXX)\b")
_CAPS_NAME = re.compile(r"(?<![\w$/.-])[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+(?![\w/.-])")


@functools.lru_cache(maxsize=1)
def _source_text() -> str:
    files = [p for d in ("deepvis_jax", "converters", "benchmarks", "tests", "docs") for p in (REPO / d).rglob("*.py")]
    files += [REPO / ".ci" / "run", REPO / "pyproject.toml"]
    return "\n".join(p.read_text() for p in files if p.is_file() and p.name != "test_docs.py")


def placeholders(text: str) -> list[tuple[int, str]]:
    """(line, token) of each placeholder in markdown `text`, outside fenced blocks, inline code and link targets."""
    out, fenced = [], False
    for i, line in enumerate(text.splitlines(), 1):
        if re.match(r"^ *```", line):
            fenced = not fenced
            continue
        if fenced:
            continue
        words = re.sub(r"\]\([^)]*\)", "]", re.sub(r"`[^`]*`", "", line))
        out += [(i, m.group()) for m in _UNFINISHED.finditer(words)]
        out += [(i, m.group()) for m in _CAPS_NAME.finditer(words) if m.group() not in _source_text()]
    return out


@pytest.mark.parametrize("path", DOCS, ids=_name)
def test_no_placeholders(path):
    found = placeholders(path.read_text())
    assert not found, f"{_name(path)} has placeholders (line, token): {found}"


def test_placeholders_are_found():
    """The placeholder finder on hand-made text: a slot, TODO and TBD are found; code, env variables are not."""
    slot = "FAMILY" + "_MATRIX"  # spelled apart, so that this file does not name it
    text = (f"## Families\n\n{slot}\n\nDone, TODO: more.\nResult TBD.\n`{slot}` in code\n```\n{slot}\n```\n"
            "Set DEEPVIS_SLOW_TESTS=1 to run them; AVX2, CPU and README are words.\n")
    assert placeholders(text) == [(3, slot), (5, "TODO"), (6, "TBD")]
