"""Checking a dataset's files before training, and setting bad samples aside.

A bad file found in the middle of an epoch costs the run; found before the first step it
costs a second. ``check_dataset`` checks every sample (``SegmentationDataset.check_sample``:
headers by default, a full decode on request) and either raises one error listing every bad
file, or, when the user asked to skip bad samples, drops them and names each one on stderr
and in ``bad_samples.txt`` of the run (``BadSampleLog``). A sample that passes the headers
but fails to decode during training is recorded in the same log and replaced by the training
engine (``isnet.training.loop.SeededSamples``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from isnet.data.base import CONVERT_HINT, SegmentationDataset
from isnet.data.image import DataFileError

SHOWN_PROBLEMS = 20


class BadSampleLog:
    """Reports skipped samples: one line each on stderr and in a text file (when given).

    Each file is reported once per process, however often it comes round again.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.reported: set[str] = set()

    def record(self, problem: str) -> None:
        if problem in self.reported:
            return
        self.reported.add(problem)
        print(f"skipping bad sample: {problem}", file=sys.stderr)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a") as handle:
                handle.write(problem + "\n")


def check_dataset(
    dataset: SegmentationDataset,
    *,
    name: str,
    full: bool = False,
    skip_bad: bool = False,
    log: BadSampleLog | None = None,
    verbose: bool = True,
) -> SegmentationDataset:
    """Check every sample of ``dataset`` before training; return the usable samples.

    With ``skip_bad`` the bad samples are dropped and recorded in ``log``; otherwise a
    :class:`DataFileError` lists them (every file named, with its problem). ``full`` decodes
    every image and label instead of reading headers only.
    """
    started = time.perf_counter()
    good: list[int] = []
    problems: list[str] = []
    for index in range(len(dataset)):
        try:
            dataset.check_sample(index, full=full)
            good.append(index)
        except DataFileError as error:
            problems.append(str(error))
    if problems and not skip_bad:
        hint = f"; {CONVERT_HINT}"
        common = all(problem.endswith(hint) for problem in problems)  # said once, on the first line
        listed = [problem.removesuffix(hint) for problem in problems] if common else problems
        shown = "\n  ".join(listed[:SHOWN_PROBLEMS])
        more = f"\n  ... and {len(problems) - SHOWN_PROBLEMS} more" if len(problems) > SHOWN_PROBLEMS else ""
        fix = f"{CONVERT_HINT}, or set skip_bad_samples to train without them" if common else \
            "fix them, or set skip_bad_samples to train without them"
        raise DataFileError(
            f"{len(problems)} of {len(dataset)} {name} sample(s) cannot be used, e.g. {listed[0]} ({fix}):"
            f"\n  {shown}{more}"
        )
    for problem in problems:
        if log is not None:
            log.record(problem)
    if not good:
        raise DataFileError(f"none of the {len(dataset)} {name} samples can be used")
    if verbose:
        kind = "decoded" if full else "headers"
        skipped = f", {len(problems)} skipped" if problems else ""
        print(f"checked {len(dataset)} {name} samples ({kind}) in {time.perf_counter() - started:.1f} s{skipped}")
    return dataset.subset(good) if problems else dataset

