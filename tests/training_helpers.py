"""A tiny, fast training setup shared by the training tests and their subprocesses."""

from __future__ import annotations

import sys
from pathlib import Path

from isnet.model.config import AuxConfig, BackboneConfig, ISNetHeadConfig, ModelConfig
from isnet.data import synthetic
from isnet.training.config import DataConfig
from isnet.training.loop import TrainConfig, train

HEIGHT, WIDTH = 48, 64


def make_data(root: Path) -> Path:
    if not (root / "classes.txt").exists():
        synthetic.write_dataset(root, num_train=12, num_val=3, height=HEIGHT, width=WIDTH)
    return root


def tiny_config(data_root: Path, output_dir: Path, **overrides) -> TrainConfig:
    """A ResNet-18 ISNet a few channels wide, crops that need no padding (no ignored pixels)."""
    from dataclasses import replace

    dropout = overrides.pop("dropout", 0.1)
    semantic_context = overrides.pop("semantic_context", True)
    config = TrainConfig(
        model=ModelConfig(
            num_classes=len(synthetic.CLASSES),
            backbone=BackboneConfig("resnet", 18, base_channels=8, stem_channels=8),
            head=ISNetHeadConfig(channels=16, transform_channels=8, dropout=dropout, semantic_context=semantic_context),
            aux=AuxConfig(channels=8, dropout=dropout),
        ),
        data=DataConfig(dataset="folder", root=str(data_root), crop_size=(40, 56), fit_size=(WIDTH, HEIGHT),
                        scale_range=(1.0, 1.0), eval_fit_size=None),
        batch_size=4,
        lr=0.01,
        max_iters=6,
        eval_interval=0,
        checkpoint_interval=2,
        log_interval=1,
        num_workers=0,
        deterministic=True,
        progress=False,
        device="cpu",
        output_dir=str(output_dir),
    )
    return replace(config, **overrides)


if __name__ == "__main__":  # python training_helpers.py DATA OUTPUT MAX_ITERS CHECKPOINT_INTERVAL DROPOUT [DTYPE [LAYOUT [PRECISION]]]
    data, output, iters, interval, dropout = sys.argv[1:6]
    dtype, layout, precision = (sys.argv[6:] + ["float32", "channels_last", "fp32"][len(sys.argv[6:]):])[:3]
    if dtype == "float64":
        import torch

        torch.set_default_dtype(torch.float64)
    train(tiny_config(Path(data), Path(output), max_iters=int(iters), checkpoint_interval=int(interval),
                      dropout=float(dropout), channels_last=layout == "channels_last", precision=precision))
