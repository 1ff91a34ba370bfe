import pytest
import torch


@pytest.fixture(autouse=True)
def _deterministic():
    """Every test starts from the same random state and single-threaded-safe defaults."""
    torch.manual_seed(0)
    yield
