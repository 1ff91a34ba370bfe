"""The model a precision and a runtime ask for: what ``isnet predict/eval`` run.

- A float model (a checkpoint, or a preset with weights) runs in PyTorch
  (:class:`~isnet.deploy.runtimes.pytorch.FastSegmentor`, float32 or bfloat16), or in ONNX Runtime or
  OpenVINO on the graph :func:`isnet.deploy.export.export_onnx` writes. That graph is exported
  once per set of weights and kept under ``~/.cache/isnet/graphs/`` (keyed by the weights'
  and configuration's hash), so only the first run pays the export.
- A graph file runs in the runtime asked for, or with ``auto`` in the faster one here: an
  OpenVINO IR (``.xml``, e.g. ``isnet quantize``'s INT8 model) in OpenVINO; an ONNX file in
  ONNX Runtime or OpenVINO, whichever the machine's profile measured faster.

``precision="auto"`` takes the path :func:`isnet.deploy.profile.inference_path` measured fastest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from isnet.deploy.profile import inference_path
from isnet.deploy.runtimes import (
    RUNTIMES,
    Predictor,
    RuntimeSegmentor,
    graph_suffixes,
    readers_of,
)
from isnet.utils.errors import CheckpointError
from isnet.utils.machine import cache_dir, cached_profile
from isnet.utils.precision import Precision
from isnet.weights.checkpoint import model_metadata
from isnet.weights.inspection import FileKind, require_kind


def weights_digest(model: nn.Module) -> str:
    """A hash of the model's configuration, dataset record and every tensor of its state dict."""
    from isnet.deploy.export import ONNX_OPSET

    digest = hashlib.sha256(f"opset {ONNX_OPSET}, torch {torch.__version__}".encode())
    for key, value in sorted(model_metadata(model).items()):
        digest.update(f"{key}={value}".encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:24]


def exported_graph(model: nn.Module, *, log: Callable[[str], None] | None = None) -> Path:
    """The ONNX graph of ``model``: from the cache, else exported once and cached."""
    from isnet.deploy.export import export_onnx

    path = cache_dir() / "graphs" / f"{weights_digest(model)}.onnx"
    if path.is_file():
        try:
            require_kind(path, FileKind.ONNX)
        except CheckpointError as damaged:  # our own cache: made again, not the user's problem
            if log:
                log(f"{damaged}; exporting it again")
            path.unlink()
    if not path.is_file():
        if log:
            log(f"exporting the model once for the runtime (cached in {path})")
        export_onnx(model, path)  # written atomically: several processes may export it at once
    return path


def graph_runtime(
    path: str | Path | None, runtime: str = "auto", *, precision: str = "fp32", threads: int | None = None
) -> RuntimeSegmentor:
    """A runtime segmentor for an exported file, in ``runtime`` (``auto``: the one that runs its
    kind, or of several the fastest in this machine's profile, else the first registered).

    The graph computes as it was written (float32, or INT8 from ``isnet quantize``), so
    ``precision`` may only be ``auto`` or ``fp32``. Raises ``ValueError`` for what cannot run.
    """
    files = " or ".join(f"MODEL{suffix}" for suffix in graph_suffixes())
    if path is None or not readers_of(path):
        raise ValueError(f"--runtime {runtime} reads --weights {files} (`isnet export`, `isnet quantize`)"
                         + (f", not {path}" if path else ""))
    path, readers = Path(path), readers_of(path)
    if runtime == "torch":
        raise ValueError(f"--runtime torch runs a checkpoint, not the exported {path}: use --runtime "
                         f"{', '.join(reader.name for reader in readers)} or auto")
    if runtime != "auto" and RUNTIMES[runtime] not in readers:
        raise ValueError(f"--runtime {runtime}: {path} is a {path.suffix} file, which runs in "
                         f"{' or '.join(reader.name for reader in readers)} (--runtime {readers[0].name} or auto)")
    if precision not in ("auto", "fp32"):
        raise ValueError(f"{path}: an exported graph computes as it was written; --precision {precision} does not apply")
    chosen = _fastest(readers) if runtime == "auto" else RUNTIMES[runtime]
    return chosen(path, threads=threads or torch.get_num_threads())


def _fastest(readers: list[type[RuntimeSegmentor]]) -> type[RuntimeSegmentor]:
    """Of ``readers``, the fastest in this machine's profile; the first when none was timed."""
    measured = cached_profile("cpu")
    paths = {} if measured is None else measured.paths
    timed = [reader for reader in readers if f"{reader.profile_name} fp32" in paths]
    return min(timed, key=lambda reader: paths[f"{reader.profile_name} fp32"]) if timed else readers[0]


def fast_model(
    model: nn.Module,
    *,
    runtime: str = "auto",
    compile: bool = False,
    device: str | torch.device = "cpu",
    log: Callable[[str], None] | None = None,
) -> Predictor:
    """``model`` on the path ``precision="auto"`` picks: measured on this machine (any runtime,
    or PyTorch's paths only with ``runtime="torch"``); float32 PyTorch when compiling or on a GPU."""
    device = torch.device(device)
    if compile or device.type != "cpu":
        path = "torch fp32"
    else:
        path = inference_path("cpu", runtimes=("torch",) if runtime == "torch" else None, log=log)
    if log and path != "torch fp32":  # PyTorch float32 is what runs without auto: nothing to say
        log(f"precision auto: {path} (the fastest float32-accurate path measured on this machine)")
    runner, _, precision = path.partition(" ")
    if runner == "torch":
        from isnet.deploy.runtimes.pytorch import FastSegmentor

        return FastSegmentor(model, precision=precision, compile=compile)
    (runtime_name,) = [name for name, runtime in RUNTIMES.items() if runtime.profile_name == runner]
    return graph_runtime(exported_graph(model.cpu(), log=log), runtime_name)


def add_runtime_arguments(parser, *, default_precision: str = "auto") -> None:
    """``--runtime`` and ``--precision`` of ``isnet predict`` and ``isnet eval`` (which reports float32 unless asked)."""
    parser.add_argument("--runtime", choices=("auto", "torch", *RUNTIMES), default="auto",
                        help="onnx / openvino: run --weights MODEL.onnx (`isnet export`) or MODEL.xml (`isnet quantize`); "
                             "auto: a checkpoint as --precision says, an .xml in OpenVINO, an .onnx in the faster runtime here")
    parser.add_argument("--precision", choices=[str(p) for p in Precision], default=default_precision,
                        help=f"default {default_precision}; auto: the fastest float32-accurate path measured on this "
                             "machine (once, cached in ~/.cache/isnet); bf16 on CPU or GPU, fp16 on GPU")
