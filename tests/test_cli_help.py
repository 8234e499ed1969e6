"""Every command's `--help`, compared with the snapshot in tests/help/<command>.txt.

The help is what a user reads first; a refactoring of the CLI must leave it as it was, and an
intended change shows up as a changed snapshot in the diff. argparse wraps by terminal width, so
the help is rendered 100 columns wide. To rewrite the snapshots after an intended change:

    DIGITLAB_UPDATE_HELP=1 pytest tests/test_cli_help.py
"""

import os
import re
from pathlib import Path

import pytest

from digitlab.cli import main

HELP = Path(__file__).parent / "help"
COMMANDS = (
    "data", "train", "evaluate", "predict", "read", "explain", "serve", "export", "models",
    "recipes",
)  # fmt: skip
UPDATE = "DIGITLAB_UPDATE_HELP"


def render_help(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, *argv: str) -> str:
    monkeypatch.setenv("COLUMNS", "100")  # argparse's line width
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--help"])
    assert exit_.value.code == 0
    out, err = capsys.readouterr()
    assert err == ""
    return out


@pytest.mark.parametrize("command", ["digitlab", *COMMANDS])
def test_help_matches_its_snapshot(command: str, monkeypatch, capsys) -> None:
    argv = [] if command == "digitlab" else [command]
    text = render_help(monkeypatch, capsys, *argv)
    snapshot = HELP / f"{command}.txt"
    if os.environ.get(UPDATE):
        snapshot.parent.mkdir(exist_ok=True)
        snapshot.write_text(text)
    assert text == snapshot.read_text(), f"{snapshot} is out of date; see this module's docstring"


def test_every_command_has_a_snapshot(monkeypatch, capsys) -> None:
    text = render_help(monkeypatch, capsys)
    listed = re.findall(r"^    (\w+) ", text.split("commands:")[1], flags=re.MULTILINE)
    assert listed == list(COMMANDS)
