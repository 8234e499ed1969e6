"""The README keeps its promises: every link points at a file that exists, every `digitlab`
command (also under torchrun) parses with the real parser, every `make` target exists, and the
Python example prints what its comments say, run as a new user would in an empty folder."""

import contextlib
import io
import os
import re
import shlex
from pathlib import Path

import numpy as np
import pytest

from digitlab.cli.main import build_parser
from digitlab.data import MNIST
from digitlab.synth.photos import make_wild_image
from digitlab.synth.pictures import make_pictures

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
# Markdown links and images, and the src of <img> tags: targets inside the repository.
LINK = re.compile(r"\]\(([^)#\s]+)[^)]*\)|<img src=\"([^\"]+)\"")
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.DOTALL)


def blocks(language: str) -> list[str]:
    return [body for lang, body in BLOCK.findall(README) if lang == language]


def shell_commands() -> list[list[str]]:
    """Each command line of the README's bash blocks, its trailing comment dropped."""
    lines = [line for body in blocks("bash") for line in body.splitlines()]
    return [shlex.split(line, comments=True) for line in lines if line.strip()]


def digitlab_arguments(words: list[str]) -> list[str] | None:
    """The arguments given to digitlab: after `digitlab`, or after torchrun's `-m digitlab`."""
    if words[0] == "digitlab":
        return words[1:]
    if words[0] == "torchrun":
        return words[words.index("digitlab") + 1 :]
    return None


def test_every_link_points_at_a_file_in_the_repository():
    targets = [a or b for a, b in LINK.findall(README)]
    assert len(targets) >= 10
    local = [t for t in targets if not t.startswith(("http://", "https://"))]
    missing = [t for t in local if not (ROOT / t).exists()]
    assert missing == []


def test_every_digitlab_command_parses():
    commands = [args for words in shell_commands() if (args := digitlab_arguments(words))]
    assert len(commands) >= 15
    parser = build_parser()
    for args in commands:
        with contextlib.redirect_stderr(io.StringIO()) as err:
            try:
                parser.parse_args(args)
            except SystemExit:
                pytest.fail(f"`digitlab {shlex.join(args)}` does not parse: {err.getvalue()}")


def test_every_make_target_exists():
    makefile = (ROOT / "Makefile").read_text()
    targets = [words[1] for words in shell_commands() if words[0] == "make"]
    assert "test" in targets
    for target in targets:
        assert re.search(rf"^{re.escape(target)}:", makefile, re.MULTILINE), target


def test_the_bench_and_test_commands_name_files_that_exist():
    named = re.findall(r"`((?:bench|tests|tools|scripts)/[\w/]+\.py)", README)
    assert named
    assert [path for path in named if not (ROOT / path).exists()] == []


def test_the_python_example_prints_what_its_comments_say(mnist: MNIST, tmp_path, monkeypatch):
    """The Quickstart's pictures (as .ci/wheel_smoke makes them), in an empty folder: no runs,
    so the packaged model answers."""
    (example,) = blocks("python")
    expected = re.findall(r"\)\s+# (\S+)$", example, re.MULTILINE)
    make_wild_image(mnist.test_images[100], np.random.default_rng(100)).save(tmp_path / "photo.jpg")
    number, text = make_pictures(mnist.test_images, mnist.test_labels, "spaced", 1, seed=0)[0]
    number.save(tmp_path / "number.jpg")
    assert expected == ["6", text]
    monkeypatch.chdir(tmp_path)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(example, "README.md", "exec"), {})  # noqa: S102 - the README's own code
    assert printed.getvalue().split() == expected
    assert not os.path.exists(tmp_path / "runs")
