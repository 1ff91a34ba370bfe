"""The runtimes a model can run in, behind one interface (:mod:`isnet.deploy.runtimes.base`).

PyTorch (:mod:`~isnet.deploy.runtimes.pytorch`, our checkpoints, fp32/bf16/fp16) is always
there; the graph runtimes below are registered here, one line each, in order of preference
for a file more than one of them runs.
"""

from isnet.deploy.runtimes.base import (
    RUNTIMES,
    Predictor,
    RuntimeSegmentor,
    graph_suffixes,
    readers_of,
    register_runtime,
)
from isnet.deploy.runtimes.onnxruntime import OnnxSegmentor
from isnet.deploy.runtimes.openvino import OpenVinoSegmentor

register_runtime(OnnxSegmentor)
register_runtime(OpenVinoSegmentor)

__all__ = ["RUNTIMES", "Predictor", "RuntimeSegmentor", "graph_suffixes", "readers_of", "register_runtime"]
