import os

import pytest
import torch

# `precision="auto"` (the default of predict, eval and serve) measures the machine once, for
# about a minute; the tests pin its answer instead (tests/test_precision.py tests the measuring).
# Subprocesses inherit it.
os.environ.setdefault("ISNET_AUTO_PATH", "torch fp32")


@pytest.fixture(autouse=True)
def _deterministic():
    """Every test starts from the same random state and single-threaded-safe defaults."""
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="module")
def one_thread():
    """Run a module's tests on one thread: tiny models are faster so on a shared machine,
    and killed-and-resumed runs stay bitwise comparable with their subprocesses."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
