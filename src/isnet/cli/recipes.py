"""``isnet recipes``: the names of the training recipes."""

from __future__ import annotations

import argparse

HELP = "list the training recipes"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options."""


def run(args: argparse.Namespace) -> int:
    from isnet.training.recipes import recipe_names

    for name in recipe_names():
        print(name)
    return 0
