"""`digitlab recipes`: the named training recipes, one line each."""

import argparse
from typing import Any

from digitlab.cli import options


def register(subparsers: Any) -> argparse.ArgumentParser:
    return options.add_command(subparsers, "recipes", "list the training recipes")


def run(args: argparse.Namespace) -> int:
    from digitlab.config import RECIPE_NOTES, RECIPES

    for name, config in RECIPES.items():
        epochs = f"{config.epochs:3} epoch" + ("s" if config.epochs != 1 else " ")
        print(f"{name:10} {config.model:12} {epochs}  {RECIPE_NOTES[name]}")
    return 0
