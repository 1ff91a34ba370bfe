"""The demo trains a model that beats the untrained one (a short run here; `isnet demo` runs 600 iterations)."""

import pytest

from isnet.apps.demo import run_demo


@pytest.mark.slow  # over 15 s on the shared 2-core machine (load 10-15)
def test_short_demo_improves_on_the_untrained_model(tmp_path):
    result = run_demo(tmp_path, max_iters=60, num_train=16, num_val=4)
    assert result["trained_mIoU"] > result["untrained_mIoU"] + 0.1
    for name in ("run/curves.png", "run/eval/per_class_iou.png", "run/model.safetensors", "overlays/0000_overlay.png"):
        assert (tmp_path / name).stat().st_size > 0, name
