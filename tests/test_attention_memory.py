"""Attention never holds an HW×HW matrix, on any path; whole-image prediction's memory grows linearly in pixels."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from isnet.model.config import PEER_HEAD_CONFIGS, BackboneConfig, ISNetHeadConfig, ModelConfig
from isnet.model.context.attention import bounded_attention
from isnet.model.context.slcm import SemanticLevelContext
from isnet.model.segmentor import build_model

BACKBONE = BackboneConfig("resnet", 18, base_channels=4, stem_channels=8)
ISNET = ModelConfig(num_classes=4, backbone=BACKBONE, head=ISNetHeadConfig(channels=16, transform_channels=8), aux=None)
SIZE = 512  # features 64×64: HW = 4096, an HW×HW matrix 16.8M values; the image 0.8M, the logits at its size 1M


class LargestTensor(TorchDispatchMode):
    """The most elements of any tensor an operator returns while it is active."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        sizes = [t.numel() for t in tree_leaves(result) if isinstance(t, torch.Tensor)]
        self.largest = max([self.largest, *sizes])
        return result


def largest_tensor(model: torch.nn.Module, images: torch.Tensor) -> int:
    with LargestTensor() as mode:
        model(images)
    return mode.largest


def pixel_attention(model: torch.nn.Module) -> torch.nn.Module:
    for module in model.modules():
        if isinstance(module, SemanticLevelContext):
            module.attend_over = "pixels"  # SLCM over the HW-pixel region map too, as eq. (5) literally
    return model


def hw_squared(size: int = SIZE) -> int:
    return (size // 8) ** 4


PATHS = {
    "fp32": lambda model, images: (model, images),
    "channels-last": lambda model, images: (model.to(memory_format=torch.channels_last),
                                            images.contiguous(memory_format=torch.channels_last)),
    "bf16": lambda model, images: (model.bfloat16(), images.bfloat16()),
}
# The exported graphs' path (Segmentor.exportable: explicit products, traced, then looped over blocks of
# queries by the exporter) is measured in the runtimes that run it: test_onnx_runtime_holds_a_block_of_scores_...


@pytest.mark.parametrize("path", sorted(PATHS))
@pytest.mark.parametrize("slcm", ["regions", "pixels"])
def test_isnet_inference_never_holds_an_hw_by_hw_matrix(path, slcm):
    torch.manual_seed(0)
    model = build_model(ISNET).eval()
    if slcm == "pixels":
        pixel_attention(model)
    model, images = PATHS[path](model, torch.randn(1, 3, SIZE, SIZE))
    with torch.no_grad():
        assert largest_tensor(model, images) < hw_squared()


def test_isnet_training_step_never_holds_an_hw_by_hw_matrix():
    torch.manual_seed(0)
    model = pixel_attention(build_model(ISNET)).train()
    with LargestTensor() as mode:
        outputs = model(torch.randn(2, 3, 256, 256))
        sum(output.sum() for output in outputs.values()).backward()
    assert mode.largest < 2 * hw_squared(256)


@pytest.mark.parametrize("name", sorted(PEER_HEAD_CONFIGS))  # Non-local, DNL and DANet attend over all pixels
def test_peer_modules_never_hold_an_hw_by_hw_matrix(name):
    torch.manual_seed(0)
    head = PEER_HEAD_CONFIGS[name](channels=16)
    model = build_model(ModelConfig(num_classes=4, backbone=BACKBONE, head=head, aux=None)).eval()
    with torch.no_grad():
        assert largest_tensor(model, torch.randn(1, 3, SIZE, SIZE)) < hw_squared()


def test_float32_attention_takes_the_fused_kernel_whatever_the_layout():
    """The fused (flash) kernel keeps no score matrix; with strided inputs PyTorch would fall back to its math kernel."""
    torch.manual_seed(0)
    model = pixel_attention(build_model(ISNET)).eval()
    images = torch.randn(1, 3, 128, 128)
    with torch.no_grad(), sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION]):
        model(images)  # refuses to run if any call needed the math kernel
        model.to(memory_format=torch.channels_last)(images.contiguous(memory_format=torch.channels_last))


def test_bounded_attention_equals_attention_with_every_kernel():
    generator = torch.Generator().manual_seed(3)
    query, key = (torch.randn(2, 1, 300, 8, generator=generator, dtype=torch.float64) for _ in range(2))
    strided = torch.randn(2, 8, 300, generator=generator, dtype=torch.float64).transpose(1, 2).unsqueeze(1)
    wide = torch.randn(2, 1, 300, 24, generator=generator, dtype=torch.float64)  # values wider than queries
    for value in (strided, wide):
        scores = (query @ key.transpose(-1, -2) * 0.3).softmax(-1)
        torch.testing.assert_close(bounded_attention(query, key, value, scale=0.3), scores @ value, rtol=1e-10, atol=1e-12)


GROWTH = """
import json, sys, torch
from isnet.inference.engine import predict
from isnet.model.config import BackboneConfig, ISNetHeadConfig, ModelConfig
from isnet.model.segmentor import build_model

def peak_mib():  # this process's resident peak (ru_maxrss would carry the forking parent's over)
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")) / 1024

torch.set_num_threads(1)
size = int(sys.argv[1])
model = build_model(ModelConfig(num_classes=19, backbone=BackboneConfig("resnet", 18, base_channels=8, stem_channels=8),
                                head=ISNetHeadConfig(channels=16, transform_channels=8))).eval()
image = torch.randn(1, 3, size, size)
start = peak_mib()
predict(model, image)
print(json.dumps(peak_mib() - start))
"""


def peak_growth_mib(size: int) -> float:
    """Resident peak that predicting one size×size image adds, in a fresh process."""
    finished = subprocess.run([sys.executable, "-c", GROWTH, str(size)], capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-2000:]
    return json.loads(finished.stdout)


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads the resident peak from /proc")
def test_peak_memory_of_whole_image_prediction_grows_linearly_in_pixels():
    growth = {size: peak_growth_mib(size) for size in (512, 1024, 2048)}
    # 4× the pixels each step: about 4× the memory; an HW×HW matrix would make it 16×
    # (before: 455 MB → 2.65 GB → a 17 GB matrix at 2048²).
    assert growth[1024] < 6 * growth[512], growth
    assert growth[2048] < 6 * growth[1024], growth
    assert growth[2048] < 2048, growth  # MiB


@pytest.mark.slow  # four fresh processes that import torch
@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads the resident peak from /proc")
def test_the_memory_benchmark_prints_both_kernels_side_by_side():
    root = Path(__file__).resolve().parents[1]
    finished = subprocess.run([sys.executable, "-m", "benchmarks.attention_memory", "--sizes", "64", "96"],
                              cwd=root, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-2000:]
    lines = finished.stdout.splitlines()
    assert "thread(s), tiny ISNet" in lines[0]
    rows = [line for line in lines if line.startswith(("| 64×64", "| 96×96"))]
    assert len(rows) == 2 and all(row.count(" MiB (+") == 2 for row in rows), finished.stdout


ORT_GROWTH = """
import json, sys
import numpy as np, onnxruntime as ort

def peak_mib():
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")) / 1024

options = ort.SessionOptions()
options.intra_op_num_threads = 1
session = ort.InferenceSession(sys.argv[1], options, providers=["CPUExecutionProvider"])
size = int(sys.argv[2])
image = np.random.default_rng(0).standard_normal((1, 3, size, size), dtype=np.float32)
start = peak_mib()
session.run(None, {"images": image})
print(json.dumps(peak_mib() - start))
"""


@pytest.mark.slow  # two exports and four fresh processes
@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads the resident peak from /proc")
def test_onnx_runtime_holds_a_block_of_scores_and_grows_linearly_in_pixels(tmp_path):
    """The exported graph's attention is a Loop over blocks of queries: ONNX Runtime's peak grows with
    the pixels, far below ILCM's HW×HW scores, which the same graph without the Loop does hold."""
    pytest.importorskip("onnxruntime")
    from isnet.deploy.export import export_onnx

    torch.manual_seed(0)
    model = build_model(ISNET).eval()
    graphs = {"looped": export_onnx(model, tmp_path / "looped.onnx", sample_size=(64, 64)),
              "whole": export_onnx(model, tmp_path / "whole.onnx", sample_size=(64, 64), query_block=None)}

    def growth(name: str, size: int) -> float:
        finished = subprocess.run([sys.executable, "-c", ORT_GROWTH, str(graphs[name]), str(size)],
                                  capture_output=True, text=True, timeout=600)
        assert finished.returncode == 0, finished.stderr[-2000:]
        return json.loads(finished.stdout)

    matrix_mib = hw_squared(1024) * 4 / 2**20  # ILCM's float32 scores at 1024²: 1 GiB
    whole = growth("whole", 1024)
    assert whole > matrix_mib, whole  # the measurement sees the matrix where it is held
    looped = {size: growth("looped", size) for size in (512, 1024)}
    assert looped[1024] < matrix_mib / 2, looped  # the features, the image and 1,024 × HW scores
    assert looped[1024] < 6 * looped[512], looped  # 4× the pixels, about 4× the memory (an HW×HW matrix: 16×)


@pytest.mark.slow  # two exports and four fresh processes
@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_the_onnx_memory_benchmark_prints_both_graphs_side_by_side(runtime):
    pytest.importorskip(runtime)
    root = Path(__file__).resolve().parents[1]
    finished = subprocess.run([sys.executable, "-m", "benchmarks.onnx_memory", "--runtime", runtime, "--sizes", "64x64", "96x128"],
                              cwd=root, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-2000:]
    lines = finished.stdout.splitlines()
    assert len(lines) == 2 and all(f"tiny ISNet, {runtime}, 1×3×" in line and line.endswith("same logits: True")
                                   for line in lines), finished.stdout
