"""Starting ``isnet serve`` as a user would (a subprocess on a free loopback port) and talking HTTP to it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from argparse import Namespace
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

from isnet.checkpoint import load_model, save_model
from isnet.config import BackboneConfig, ISNetHeadConfig, ModelConfig
from isnet.segmentor import build_model

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))}
TINY = ModelConfig(
    num_classes=4,
    backbone=BackboneConfig("resnet", 18, base_channels=8, stem_channels=8),
    head=ISNetHeadConfig(channels=16, transform_channels=8),
)
CLASS_NAMES = ["sky", "road", "tree", "car"]
STARTUP_S = 180  # importing torch on a busy 2-core machine can take long


def tiny_checkpoint(path: Path) -> Path:
    """A tiny model whose checkpoint names its classes."""
    return save_model(build_model(TINY), path, extra_metadata={"classes": json.dumps(CLASS_NAMES)})


def predict_classes(checkpoint: Path) -> list[str]:
    """The class names ``isnet predict`` uses for this checkpoint (the server must show the same)."""
    from isnet.cli import _class_names

    return _class_names(load_model(checkpoint), Namespace(checkpoint=str(checkpoint)))[0]


def random_image(path: Path, height: int, width: int, seed: int = 0) -> Path:
    Image.fromarray(np.random.RandomState(seed).randint(0, 255, (height, width, 3), np.uint8)).save(path)
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """A running ``isnet serve``: its base URL and process."""

    def __init__(self, process: subprocess.Popen, url: str, log: Path) -> None:
        self.process, self.url, self.log = process, url, log

    def health(self) -> dict:
        with urllib.request.urlopen(self.url + "/healthz", timeout=10) as response:
            return json.loads(response.read())

    def post(self, data: bytes, filename: str = "image.png", *, query: str = "", field: str = "image",
             headers: dict[str, str] | None = None, timeout: float = 120) -> tuple[int, dict[str, str], bytes]:
        """POST one file as multipart/form-data; (status, headers, body), errors included."""
        boundary = uuid.uuid4().hex
        body = (f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
                f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
        request = urllib.request.Request(
            self.url + "/predict" + query, data=body, method="POST",
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}", **(headers or {})},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()


@contextmanager
def running_server(checkpoint: Path, *options: str, log: Path):
    """``python -m isnet.cli serve`` on a free port, up once ``/healthz`` answers; stopped (SIGTERM) after."""
    port = free_port()
    command = [sys.executable, "-m", "isnet.cli", "serve", "--checkpoint", str(checkpoint), "--port", str(port), *options]
    with open(log, "wb") as output:
        process = subprocess.Popen(command, env=ENV, stdout=output, stderr=subprocess.STDOUT)
    server = Server(process, f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"isnet serve exited with {process.returncode}:\n{log.read_text()}")
            try:
                server.health()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"isnet serve did not answer /healthz in {STARTUP_S} s:\n{log.read_text()}")
                time.sleep(0.2)
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
