"""Weights for a model: a file or a released name, read in either layout, loaded strictly or for fine-tuning.

``weights`` anywhere in isnet (``create_model(weights=...)``, ``--weights``, ``--init-from``)
is a local file (one of our ``.safetensors`` or a released ``.pth``) or the name of released
weights (:data:`isnet.weights.released.WEIGHTS`), which is fetched once into torch's hub cache when
online. Loading is strict: every tensor must fit the model. For fine-tuning on other classes,
``ignore_mismatched_sizes=True`` (the Hugging Face name) loads every tensor whose shape fits
and leaves the others freshly initialised, listing them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from isnet.weights.checkpoint import CheckpointError, load_state_dict_strict, read_safetensors, read_torch_checkpoint
from isnet.weights.released import WEIGHTS, released_to_ours
from isnet.weights.transfer import (
    ClassTransfer,
    foreign_weights_problem,
    inflate_inputs,
    transfer_classes,
    weights_classes,
)

SHOWN_TENSORS = 12  # re-initialised or ignored tensors listed one by one in a summary

def cache_dir() -> Path:
    """Where released weights are kept: torch's hub cache (``$TORCH_HOME/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def resolve_weights(weights: str | Path) -> Path:
    """The local file of ``weights``: the path itself, or released weights fetched into the cache.

    Raises ``FileNotFoundError`` naming the path, or, for a released name that cannot be
    fetched (offline), the URL and the cache path to put the file at by hand.
    """
    path = Path(weights).expanduser()
    if path.exists() or str(weights) not in WEIGHTS:
        if not path.exists():
            raise FileNotFoundError(
                f"{weights}: no such weights file, and not the name of released weights "
                f"({', '.join(WEIGHTS)})"
            )
        return path
    release = WEIGHTS[str(weights)]
    target = cache_dir() / release.file_name
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(release.url, str(target), hash_prefix=release.sha256, progress=True)
        except (OSError, RuntimeError) as error:  # URLError is an OSError; a hash mismatch a RuntimeError
            raise FileNotFoundError(
                f"cannot fetch released weights {release.preset} from {release.url} ({error}); "
                f"download the file by hand to {target}, or pass its path"
            ) from None
    return target


def read_weights(path: Path) -> tuple[dict[str, Tensor], dict[str, str] | None]:
    """The tensors of a weights file under our names, and its metadata (our safetensors; None for a
    released ``.pth``): the file is read, and its seal checked, once."""
    if path.suffix == ".safetensors":
        return read_safetensors(path)
    return {released_to_ours(key): value for key, value in read_torch_checkpoint(path).items()}, None


@dataclass
class LoadReport:
    """What loading weights with ``ignore_mismatched_sizes`` did not take from the file."""

    source: Path
    loaded: int = 0  # tensors of the model taken from the file
    reinitialised: list[str] = field(default_factory=list)  # "key: file (150, 512, 1, 1) vs model (11, ...)" or "key: missing"
    ignored: list[str] = field(default_factory=list)  # tensors of the file the model does not have
    adapted: list[str] = field(default_factory=list)  # tensors changed to fit: inflated input channels
    classes: ClassTransfer | None = None  # classifier rows kept by class name, when both lists were known
    note: str | None = None
    metadata: dict[str, str] | None = None  # what an own safetensors file carries, as read with its tensors

    def summary(self) -> str:
        total = self.loaded + len(self.reinitialised)
        lines = [f"weights from {self.source}: {self.loaded} of the model's {total} tensors loaded, "
                 f"{len(self.reinitialised)} freshly initialised"
                 + (f", {len(self.ignored)} of the file's ignored" if self.ignored else "")]
        for verb, entries in (("re-initialised", self.reinitialised), ("ignored", self.ignored)):
            lines += [f"  {verb} {entry}" for entry in entries[:SHOWN_TENSORS]]
            if len(entries) > SHOWN_TENSORS:
                lines.append(f"  ... and {len(entries) - SHOWN_TENSORS} more {verb}")
        lines += [f"  {entry}" for entry in self.adapted]
        if self.classes is not None:
            lines.append(self.classes.summary())
        if self.note:
            lines.append(f"  {self.note}")
        return "\n".join(lines)


def load_weights(
    model: nn.Module,
    weights: str | Path,
    *,
    ignore_mismatched_sizes: bool = False,
    classes: Sequence[str] | None = None,
    refuse_foreign: bool = False,
) -> LoadReport:
    """Load ``weights`` (a file or a released name) into ``model``.

    Strict unless ``ignore_mismatched_sizes``: then tensors whose key and shape match are
    loaded, the model's others keep their fresh initialisation, the file's others are ignored,
    and the report lists both. RGB weights for a model of other input channels have their
    first convolution inflated (:func:`isnet.weights.transfer.inflate_input_conv`). With
    ``classes`` (the model's class names) and a file that names its classes (our safetensors,
    released weights), the classifier rows of the classes both name are kept and the others
    re-initialised (:func:`isnet.weights.transfer.transfer_classes`); the report lists both.
    With ``refuse_foreign``, weights of which most of the model's tensors do not fit (another
    architecture) are refused by a :class:`CheckpointError` naming the mismatch.
    """
    path = resolve_weights(weights)
    state, metadata = read_weights(path)
    original = state
    report = LoadReport(path, metadata=metadata)
    if not ignore_mismatched_sizes:
        load_state_dict_strict(model, state, source=path)
        return report
    state, report.adapted = inflate_inputs(model, state)
    if classes is not None:
        source_classes = weights_classes(path, metadata)
        if source_classes is None:
            report.note = "the file names no classes: classifiers of another class count are re-initialised whole"
        else:
            state, report.classes = transfer_classes(model, state, source_classes, list(classes))
    expected = model.state_dict()
    usable = {}
    for key, value in expected.items():
        if key not in state and key in original:  # a classifier of which a part does not fit (transfer_classes)
            report.reinitialised.append(f"{key}: file {tuple(original[key].shape)} vs model {tuple(value.shape)}, "
                                        "its classifier re-initialised whole")
        elif key not in state:
            report.reinitialised.append(f"{key}: missing")
        elif state[key].shape != value.shape:
            report.reinitialised.append(f"{key}: file {tuple(state[key].shape)} vs model {tuple(value.shape)}")
        else:
            usable[key] = state[key]
    report.ignored = [key for key in state if key not in expected]
    if not usable:
        raise CheckpointError(f"{path}: no tensor of the file fits the model: not weights of this architecture")
    problem = foreign_weights_problem(path, model, state, len(usable)) if refuse_foreign else None
    if problem:
        raise CheckpointError(problem)
    model.load_state_dict(usable, strict=False)
    report.loaded = len(usable)
    return report
