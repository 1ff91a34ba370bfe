"""A tiny checkpoint with named classes, images, and what ``isnet predict`` makes of them, for the serve tests.

Starting the server and talking to it is :mod:`isnet.apps.serve.client` (the load benchmark uses it too).
"""

from __future__ import annotations

import os
from argparse import Namespace
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from isnet.apps.serve.client import Server, running_server
from isnet.weights.checkpoint import load_model, save_model
from isnet.model.config import BackboneConfig, ISNetHeadConfig, ModelConfig
from isnet.data.info import DatasetInfo
from isnet.model.segmentor import build_model

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))}
TINY = ModelConfig(
    num_classes=4,
    backbone=BackboneConfig("resnet", 18, base_channels=8, stem_channels=8),
    head=ISNetHeadConfig(channels=16, transform_channels=8),
)
CLASS_NAMES = ["sky", "road", "tree", "car"]
RECORD = DatasetInfo(name="tiny_streets", classes=tuple(CLASS_NAMES),
                     palette=((70, 130, 180), (128, 64, 128), (60, 150, 40), (0, 0, 142)))


def tiny_checkpoint(path: Path) -> Path:
    """A tiny model whose checkpoint carries its dataset record (class names and colours)."""
    model = build_model(TINY)
    model.dataset = RECORD
    return save_model(model, path)


def predict_classes(checkpoint: Path) -> list[str]:
    """The class names ``isnet predict`` uses for this checkpoint (the server must show the same)."""
    from isnet.cli.common import class_names

    return class_names(load_model(checkpoint), Namespace(checkpoint=str(checkpoint)))[0]


def random_image(path: Path, height: int, width: int, seed: int = 0) -> Path:
    Image.fromarray(np.random.RandomState(seed).randint(0, 255, (height, width, 3), np.uint8)).save(path)
    return path


def module_server(tmp_path_factory, checkpoint: Path, *options: str) -> Iterator[Server]:
    """For a module fixture: ``isnet serve`` of ``checkpoint`` with ``options``, logged, stopped after."""
    log = tmp_path_factory.mktemp("serve_log") / "server.log"
    with running_server(checkpoint, *options, log=log) as running:
        yield running
