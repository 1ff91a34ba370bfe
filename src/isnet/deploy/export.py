"""Export a segmentor for deployment: ONNX (for ONNX Runtime and others) and ``torch.export``.

Both graphs compute the stage-2 logits at the head's resolution (``model.logits``), take
any batch size and any image size (dynamic axes), and contain no data-dependent control
flow: SLCM's regions come from one-hot matrix products of the argmax (data decide values,
not the path), and SLCM attends over the K region representations weighted by their pixel
counts (:func:`isnet.deploy.runtimes.pytorch.use_region_attention`), so the exported graph never forms an
HW×HW matrix for SLCM. ILCM's attention over all pixels is exported as matrix products and
a softmax (:func:`isnet.model.context.attention.explicit_attention`), which
:func:`isnet.deploy.onnx_attention.loop_attention` turns into an ONNX ``Loop`` over blocks of
1,024 queries: ONNX Runtime and OpenVINO hold 1,024 × HW scores at a time, linear in the pixels
(``python -m benchmarks.onnx_memory``).

Both files carry the model's configuration and dataset record (``isnet_config`` and
``isnet_dataset``: ONNX metadata properties, ``.pt2`` extra files), so
:class:`isnet.deploy.runtimes.onnxruntime.OnnxSegmentor` and ``isnet predict`` know the classes, colours and
test protocol.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from isnet.deploy.runtimes.pytorch import use_region_attention
from isnet.deploy.onnx_attention import QUERY_BLOCK, loop_attention
from isnet.utils.atomic_files import atomic_path
from isnet.utils.errors import CheckpointError
from isnet.utils.seal import PLACEHOLDER, SEAL_KEY, seal
from isnet.weights.checkpoint import (
    CONFIG_METADATA_KEY,
    DATASET_METADATA_KEY,
    model_metadata,
)
from isnet.weights.inspection import (
    FORMAT_METADATA_KEY,
    FileKind,
    file_kind,
    require_file,
    require_intact_zip,
    require_kind,
    require_known_format,
)

ONNX_OPSET = 17


class LogitsModule(nn.Module):
    """``model.logits`` as a module's forward (what the exported graphs compute)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> Tensor:
        return self.model.logits(images)


def exportable(model: nn.Module, *, explicit_attention: bool = False) -> LogitsModule:
    """An eval-mode copy of ``model`` with region attention, wrapped for export; for a graph
    without a fused attention operator, with attention as matrix products (:meth:`Segmentor.exportable`)."""
    model = use_region_attention(copy.deepcopy(model).eval().float()).exportable(explicit_attention)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return LogitsModule(model).eval()


def export_onnx(
    model: nn.Module,
    path: str | Path,
    *,
    sample_size: tuple[int, int] = (512, 512),
    opset: int = ONNX_OPSET,
    query_block: int | None = QUERY_BLOCK,
) -> Path:
    """Write ``model`` as ONNX with dynamic batch, height and width; returns the path.

    Uses the TorchScript-based exporter (the dynamo-based one needs ``onnxscript``). The
    sample input only guides tracing; the graph accepts other sizes. Attention takes
    ``query_block`` queries at a time (:func:`~isnet.deploy.onnx_attention.loop_attention`);
    ``None`` leaves it whole (HW×HW scores: for comparisons only).
    """
    import onnx

    path = Path(path)
    module = exportable(model, explicit_attention=True)
    sample = torch.randn(1, model.config.backbone.in_channels, *sample_size)
    with atomic_path(path) as temporary, warnings.catch_warnings():  # a kill leaves the old file or the new one
        warnings.simplefilter("ignore")  # tracer warnings about shape arithmetic
        torch.onnx.export(
            module,
            (sample,),
            str(temporary),
            input_names=["images"],
            output_names=["logits"],
            dynamic_axes={"images": {0: "batch", 2: "height", 3: "width"}, "logits": {0: "batch", 2: "out_height", 3: "out_width"}},
            opset_version=opset,
            dynamo=False,
        )
        graph = onnx.load(str(temporary))
        if query_block is not None:
            loop_attention(graph, query_block)
        for key, value in {**model_metadata(model), SEAL_KEY: PLACEHOLDER}.items():
            entry = graph.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(graph, str(temporary))
        seal(temporary)  # a flipped bit or a cut anywhere in the graph is then found when it is opened
    return path


def export_program(model: nn.Module, path: str | Path, *, sample_size: tuple[int, int] = (512, 512)) -> Path:
    """Write ``model`` as a ``torch.export`` program (``.pt2``) with dynamic batch and size.

    Load it with ``torch.export.load(path).module()``; call the result on images.
    """
    path = Path(path)
    module = exportable(model)
    sample = torch.randn(2, model.config.backbone.in_channels, *sample_size)
    auto = torch.export.Dim.AUTO
    program = torch.export.export(module, (sample,), dynamic_shapes={"images": {0: auto, 2: auto, 3: auto}})
    with atomic_path(path) as temporary:
        torch.export.save(program, str(temporary), extra_files=model_metadata(model))
    return path


def load_program(path: str | Path) -> tuple[torch.export.ExportedProgram, dict[str, str]]:
    """A ``.pt2`` of :func:`export_program` and the configuration and dataset record it carries.

    A file of another kind is named as what it is, and a damaged one (a cut, a flipped bit:
    every member of the zip archive is checked against its CRC-32, which ``torch.export.load``
    does not do) is a :class:`~isnet.utils.errors.CheckpointError` naming the file.
    """
    path = Path(path)
    require_file(path, FileKind.TORCH_EXPORT)
    if file_kind(path) is FileKind.DAMAGED_ZIP:
        require_intact_zip(path, "torch.export program (.pt2)")
    require_kind(path, FileKind.TORCH_EXPORT)
    require_intact_zip(path, "torch.export program (.pt2)")
    extra_files = {FORMAT_METADATA_KEY: "", CONFIG_METADATA_KEY: "", DATASET_METADATA_KEY: ""}
    try:
        program = torch.export.load(str(path), extra_files=extra_files)
    except Exception as error:  # torch's deserialiser raises many types for a malformed program
        words = next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
        raise CheckpointError(f"{path}: damaged torch.export program: torch.export.load cannot read it ({words[:200]})") from None
    metadata = {key: value for key, value in extra_files.items() if value}
    require_known_format(metadata, path)
    return program, metadata


def program_metadata(path: str | Path) -> dict[str, str]:
    """The configuration and dataset record a ``.pt2`` from :func:`export_program` carries."""
    return load_program(path)[1]


def control_flow_ops(path: str | Path) -> list[str]:
    """ONNX control-flow nodes (If, Loop, Scan) in the graph at ``path``: none are expected but the Loops
    of :func:`~isnet.deploy.onnx_attention.loop_attention` (whose trip count is the image's size, not its data)."""
    import onnx

    graph = onnx.load(str(path)).graph
    return [node.op_type for node in graph.node if node.op_type in ("If", "Loop", "Scan")]
