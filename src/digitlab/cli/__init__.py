"""The `digitlab` command (`digitlab.cli:main`, also `python -m digitlab`); see cli/main.py."""

from digitlab.cli.main import COMMANDS, build_parser, main
from digitlab.cli.options import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_USAGE

__all__ = ["COMMANDS", "EXIT_ERROR", "EXIT_INTERRUPTED", "EXIT_USAGE", "build_parser", "main"]
