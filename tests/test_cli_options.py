"""`digitlab train`'s overrides, made from TrainConfig's fields: one flag per field, checked."""

import argparse
import dataclasses

import pytest

from digitlab.cli import EXIT_ERROR, main, options
from digitlab.config import OPTIMIZERS, SCHEDULES, TrainConfig, make_config


def overrides_parser() -> argparse.ArgumentParser:
    parser = options.Parser(prog="digitlab train")
    options.add_training_overrides(parser)
    return parser


def test_every_field_but_the_recipe_is_a_flag_with_the_fields_help():
    flags = overrides_parser()._option_string_actions
    for field in dataclasses.fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        if field.name == "recipe":  # chosen by --recipe, not overridden
            assert flag not in flags
            continue
        assert flags[flag].dest == field.name
        assert flags[flag].help == field.metadata["help"].replace("%", "%%")
        assert flags[flag].default is None  # not given: the recipe's value
    assert flags["--optimizer"].choices == OPTIMIZERS
    assert flags["--schedule"].choices == SCHEDULES


def test_given_flags_become_typed_overrides_of_the_recipe():
    argv = ["--batch-size", "64", "--lr", "0.1", "--ema", "0.999", "--seed", "0"]
    argv += ["--no-shuffle", "--channels-last", "--optimizer", "sgd", "--eval-batch-size", "50"]
    overrides = options.training_overrides(overrides_parser().parse_args(argv))
    assert overrides == {
        "batch_size": 64, "lr": 0.1, "ema": 0.999, "seed": 0, "shuffle": False,
        "channels_last": True, "optimizer": "sgd", "eval_batch_size": 50,
    }  # fmt: skip
    config = make_config("fast", **overrides)
    assert (config.shuffle, config.channels_last, config.epochs) == (False, True, 1)
    assert options.training_overrides(overrides_parser().parse_args([])) == {}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--eval-batch-size", "0"], "argument --eval-batch-size: must be a whole number of at"),
        (["--threads", "-1"], "argument --threads: must be a whole number of at least 1"),
        (["--lr", "0"], "argument --lr: must be a number above 0"),
        (["--subset", "1.5"], "argument --subset: invalid positive integer value: '1.5'"),
        (["--optimizer", "lion"], "argument --optimizer: invalid choice: 'lion'"),
        (["--shuffle", "yes"], "unrecognized arguments: yes"),
    ],
)
def test_bad_values_are_refused_as_they_are_parsed(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        overrides_parser().parse_args(argv)
    assert exit_.value.code == options.EXIT_USAGE
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("flag", [["--seed", "0"], ["--no-shuffle"], ["--channels-last"]])
def test_resume_refuses_any_override(flag, tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path), *flag]) == EXIT_ERROR
    assert "drop the other flags" in capsys.readouterr().err
