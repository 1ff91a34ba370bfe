"""Talking to ``isnet serve`` with the standard library, and starting one in a subprocess.

Used by the tests and the load benchmark (:mod:`benchmarks.serve_load`); handy in scripts::

    with running_server("model.safetensors", log=Path("server.log")) as server:
        status, headers, body = server.post(Path("photo.jpg").read_bytes(), "photo.jpg")

Needs none of the server's packages.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from isnet.utils.child_process import child_environment

STARTUP_S = 180  # importing torch on a busy small machine can take long


def free_port() -> int:
    """A TCP port free on the loopback interface now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def multipart_body(data: bytes, filename: str, field: str = "image") -> tuple[bytes, str]:
    """One file as a multipart/form-data body, and the request's Content-Type."""
    boundary = uuid.uuid4().hex
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


class Server:
    """A running ``isnet serve``: its base URL and, when started here, its process and log."""

    def __init__(self, url: str, process: subprocess.Popen | None = None, log: Path | None = None) -> None:
        self.url, self.process, self.log = url.rstrip("/"), process, log

    def health(self, timeout: float = 10) -> dict:
        with urllib.request.urlopen(self.url + "/healthz", timeout=timeout) as response:
            return json.loads(response.read())

    def post(self, data: bytes, filename: str = "image.png", *, query: str = "", field: str = "image",
             headers: dict[str, str] | None = None, timeout: float = 120) -> tuple[int, dict[str, str], bytes]:
        """POST one file to ``/predict``; (status, headers with lower-case names, body), errors included."""
        body, content_type = multipart_body(data, filename, field)
        request = urllib.request.Request(self.url + "/predict" + query, data=body, method="POST",
                                         headers={"Content-Type": content_type, **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
        except urllib.error.HTTPError as error:
            return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()


@contextmanager
def running_server(checkpoint: str | Path, *options: str, log: Path) -> Iterator[Server]:
    """``python -m isnet.cli serve`` on a free loopback port, yielded once ``/healthz`` answers; SIGTERM after."""
    port = free_port()
    command = [sys.executable, "-m", "isnet.cli", "serve", "--checkpoint", str(checkpoint), "--port", str(port), *options]
    with open(log, "wb") as output:
        process = subprocess.Popen(command, env=child_environment(), stdout=output, stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}", process, log)
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
                    raise RuntimeError(f"isnet serve did not answer /healthz in {STARTUP_S} s:\n{log.read_text()}") from None
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
