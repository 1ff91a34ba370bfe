import pytest
import torch


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
