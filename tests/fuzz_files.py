"""Damaged files for the fuzz tests, and what a refusal of one must look like.

A damage is an empty file, a cut at an offset or one flipped bit; :func:`damages` draws them
with hypothesis (derandomised: the same examples on every run, so CI is repeatable),
:func:`fixed_damages` lists the cuts every file kind is tried with (inside the first bytes
where kinds are told apart, inside the header, in the middle, one byte short).
The commands run in process (``isnet.cli.commands.main``, the one error boundary) with
``capfd``, which also sees what native libraries print to the file descriptors.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from isnet.cli.commands import main


def fuzz_settings(examples: int) -> settings:
    """Hypothesis settings of the fuzz tests: a fixed seed, ``examples`` examples, no deadline, no database."""
    return settings(derandomize=True, max_examples=examples, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@dataclass(frozen=True)
class Damage:
    """What is done to a file's bytes: ``empty``, ``cut`` at ``offset``, or ``flipped`` (bit ``bit`` of byte ``offset``)."""

    kind: str
    offset: int = 0
    bit: int = 0

    def apply(self, data: bytes) -> bytes:
        if self.kind == "empty":
            return b""
        if self.kind == "cut":
            return data[: self.offset]
        changed = bytearray(data)
        changed[self.offset] ^= 1 << self.bit
        return bytes(changed)

    def __str__(self) -> str:
        return {"empty": "emptied", "cut": f"cut to {self.offset} bytes"}.get(
            self.kind, f"bit {self.bit} of byte {self.offset} flipped")


def damages(size: int) -> st.SearchStrategy[Damage]:
    """Any damage of a file of ``size`` bytes; flips are drawn most, as they are the hardest to see."""
    cuts = st.integers(1, size - 1).map(lambda offset: Damage("cut", offset))
    flips = st.tuples(st.integers(0, size - 1), st.integers(0, 7)).map(lambda where: Damage("flipped", *where))
    return st.one_of(st.just(Damage("empty")), cuts, flips, flips, flips)


def fixed_damages(size: int) -> list[Damage]:
    """The empty file and cuts at several offsets, tried on every kind."""
    offsets = sorted({1, 8, 9, 64, size // 10, size // 4, size // 2, size - 1} - {0, size})
    return [Damage("empty")] + [Damage("cut", offset) for offset in offsets]


def damaged_copy(source: Path, target: Path, damage: Damage) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(damage.apply(source.read_bytes()))
    return target


def run_isnet(arguments: list[object], capfd) -> tuple[int, str]:
    """``isnet ARGUMENTS`` in process: the exit status and everything printed (both streams, native output too)."""
    capfd.readouterr()
    try:
        status = main([str(argument) for argument in arguments])
    except SystemExit as stop:  # argparse's usage errors, and `isnet serve`'s messages
        status = stop.code if isinstance(stop.code, int) else 1
        if not isinstance(stop.code, int) and stop.code is not None:
            print(stop.code)
    captured = capfd.readouterr()
    return status, captured.out + captured.err


def refusal(status: int, output: str, command: str, path: Path, *, statuses: tuple[int, ...] = (1,),
            alone: bool = True) -> str:
    """The one line of an error of ``isnet COMMAND`` naming ``path``, after checking how the command ended.

    Exit status in ``statuses``, no traceback, exactly one ``isnet COMMAND: error:`` line, which
    is the last line printed (with ``alone``, the only one: no runtime's own complaints before
    it) and names the file; returns its text after the prefix.
    """
    assert status in statuses, f"exit status {status}:\n{output[-2000:]}"
    assert "Traceback" not in output, output[-3000:]
    prefix = f"isnet {command}: error: "
    lines = [line for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(prefix)]
    assert len(errors) == 1 and lines[-1] == errors[0], output[-2000:]
    assert not alone or lines == errors, output[-2000:]
    assert str(path) in errors[0], errors[0]
    return errors[0].removeprefix(prefix)
