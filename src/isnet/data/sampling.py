"""The order of training samples: an endless, resumable, seeded stream.

Every training sample is seeded by its position in the run, so a resumed run takes the same
crops, flips and replacements of bad samples as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler

from isnet.data.image import DataFileError
from isnet.data.validate import BadSampleLog


def sample_seed(run_seed: int, position: int) -> int:
    """The augmentation seed of the sample at ``position`` in the run's global sample stream."""
    return (run_seed * 1_000_003 + position * 7919 + 12345) % (2**31 - 1)


class RunSampler(Sampler):
    """An endless, resumable stream of ``(index, seed)`` for one process.

    The run's global stream visits the dataset in a fresh permutation each epoch (seeded by
    the run seed and the epoch). Global batch ``i`` is stream positions
    ``[i·B, (i+1)·B)``; process ``r`` of ``W`` takes its contiguous ``B/W`` share, so the
    union over processes is the single-process batch. Starting at ``start_batch`` is how a
    resumed run continues where it stopped.
    """

    def __init__(self, dataset_size: int, batch_size: int, *, seed: int, rank: int, world_size: int, start_batch: int) -> None:
        self.size, self.batch_size, self.seed = dataset_size, batch_size, seed
        self.rank, self.world_size, self.start_batch = rank, world_size, start_batch
        self.per_process = batch_size // world_size

    def _permutation(self, epoch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        return torch.randperm(self.size, generator=generator)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        batch = self.start_batch
        epoch, order = -1, None
        while True:
            first = batch * self.batch_size + self.rank * self.per_process
            for position in range(first, first + self.per_process):
                if position // self.size != epoch:
                    epoch = position // self.size
                    order = self._permutation(epoch)
                yield int(order[position % self.size]), sample_seed(self.seed, position)
            batch += 1


class SeededSamples(Dataset):
    """Looks samples up by ``(index, seed)``, seeding the dataset's augmentation first.

    A sample whose files fail to load raises the error naming the file, unless a
    ``bad_samples`` log is given: then it is recorded there and replaced by the next sample
    in dataset order, drawn with the same seed, so a resumed run makes the same replacement.
    """

    def __init__(self, dataset: Dataset, bad_samples: BadSampleLog | None = None) -> None:
        self.dataset = dataset
        self.bad_samples = bad_samples

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        index, seed = key
        reseed = getattr(getattr(self.dataset, "transform", None), "reseed", None)
        for offset in range(len(self.dataset)):
            if reseed is not None:
                reseed(seed)
            try:
                return self.dataset[(index + offset) % len(self.dataset)]
            except DataFileError as error:
                if self.bad_samples is None:
                    raise
                self.bad_samples.record(str(error))
        raise DataFileError(f"all {len(self.dataset)} training samples failed to load")
