"""`digitlab models`: the networks in the registry, with their sizes."""

import argparse
from typing import Any

from digitlab.cli import options


def register(subparsers: Any) -> argparse.ArgumentParser:
    return options.add_command(subparsers, "models", "list the models in the registry")


def run(args: argparse.Namespace) -> int:
    from digitlab.models import count_parameters, create_model, describe_model, list_models

    for name in list_models():
        parameters = count_parameters(create_model(name))
        print(f"{name:12} {parameters:>10,} parameters  {describe_model(name)}")
    return 0
