"""``--engine ray --ray-address`` of a cluster that does not answer (issue 27, point 5): one line within
``--ray-timeout``, and SIGTERM stops the wait (Ray itself retries for ever in native code).

Run the reliability suite with ``pytest -k "hostile or corrupt or fault or resume or malformed"``.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("ray", reason="--engine ray needs the ray extra: pip install -e '.[ray]'")

sys.path.insert(0, str(Path(__file__).parent))
from cli_helpers import environment, first_line, isnet  # noqa: E402
from test_hostile_options import tiny_checkpoint  # noqa: E402

from isnet.apps.serve.client import free_port  # noqa: E402

pytestmark = pytest.mark.slow  # Ray's import and a timeout: about 15 s each


def test_hostile_unreachable_ray_address_fails_within_its_timeout(tmp_path):
    (tmp_path / "photos").mkdir()
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "photos" / "a.png")
    port = free_port()
    started = time.monotonic()
    result = isnet("predict", tmp_path / "photos", "--checkpoint", tiny_checkpoint(tmp_path, 4), "--engine", "ray",
                   "--ray-address", f"127.0.0.1:{port}", "--ray-timeout", "2", "--precision", "fp32",
                   "--output", tmp_path / "out", timeout=240)
    assert first_line(result, "predict", 1).startswith(
        f"--ray-address 127.0.0.1:{port}: no Ray cluster answered within 2 s (Connection refused)")
    assert time.monotonic() - started < 200
    assert not list((tmp_path / "out").glob("*.png")) if (tmp_path / "out").exists() else True


def test_hostile_silent_ray_address_times_out_and_sigterm_stops_the_wait(tmp_path):
    """Something accepts connections but never speaks Ray: the wait ends at the timeout, or at SIGTERM
    (which Ray, stuck in native code, would not see)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        script = ("import sys, ray\nfrom isnet.apps.ray_predict import connect_to_cluster\n"
                  "print('connecting', flush=True)\nconnect_to_cluster(sys.argv[1], float(sys.argv[2]))\n")
        from isnet.apps.ray_predict import connect_to_cluster  # noqa: F401  (the script imports the same)

        quick = subprocess.run([sys.executable, "-c", script, address, "3"], env=environment(), capture_output=True,
                               text=True, timeout=200)
        assert quick.returncode == 1
        assert (f"ConnectionError: --ray-address {address}: something listens there, but no Ray cluster answered "
                "within 3 s (--ray-timeout)") in quick.stderr

        waiting = subprocess.Popen([sys.executable, "-c", script, address, "600"], env=environment(),
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            assert waiting.stdout.readline().strip() == "connecting"
            time.sleep(3)  # inside ray.init's retries
            assert waiting.poll() is None
            stopped = time.monotonic()
            waiting.send_signal(signal.SIGTERM)
            waiting.wait(30)
            assert time.monotonic() - stopped < 30
            assert waiting.returncode == -signal.SIGTERM
        finally:
            if waiting.poll() is None:
                waiting.kill()
                waiting.wait()
