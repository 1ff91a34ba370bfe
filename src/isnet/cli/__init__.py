"""The ``isnet`` command line."""

from isnet.cli.commands import main

__all__ = ["main"]
