"""``isnet demo``: train a small ISNet on generated street scenes, offline, in a few minutes.

Writes the scenes as a folder dataset, scores the untrained model, trains, scores again,
and leaves the run (curves, evaluation report, checkpoints) and prediction overlays in
``output``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from isnet.apps.predict_files import segment_files
from isnet.data import synthetic
from isnet.evaluation import evaluate
from isnet.inference.engine import InferenceConfig
from isnet.model.config import AuxConfig, BackboneConfig, ISNetHeadConfig, ModelConfig
from isnet.model.segmentor import build_model
from isnet.training.config import DataConfig, TrainConfig
from isnet.training.loop import train
from isnet.weights.checkpoint import load_model

DEMO_MODEL = ModelConfig(
    num_classes=len(synthetic.CLASSES),
    backbone=BackboneConfig("resnet", 18, base_channels=16, stem_channels=16),
    head=ISNetHeadConfig(channels=64, transform_channels=32),
    aux=AuxConfig(channels=32),
)


def demo_config(output: Path, **overrides) -> TrainConfig:
    config = TrainConfig(
        model=DEMO_MODEL,
        data=DataConfig(
            dataset="folder",
            root=str(output / "data"),
            crop_size=(96, 128),
            fit_size=(128, 96),
            scale_range=(0.75, 1.5),
            eval_fit_size=None,
        ),
        batch_size=8,
        lr=0.02,
        weight_decay=1e-4,
        max_iters=600,
        eval_interval=200,
        checkpoint_interval=200,
        log_interval=10,
        num_workers=1,
        output_dir=str(output / "run"),
    )
    from dataclasses import replace

    return replace(config, **overrides)


def run_demo(output: str | Path = "outputs/demo", *, max_iters: int = 600, num_train: int = 64, num_val: int = 16) -> dict:
    output = Path(output)
    data_root = output / "data"
    if not (data_root / "classes.txt").exists():
        print(f"drawing {num_train} training and {num_val} validation scenes into {data_root}")
        synthetic.write_dataset(data_root, num_train=num_train, num_val=num_val)
    config = demo_config(output, max_iters=max_iters)

    torch.manual_seed(config.seed)
    val_set = config.data.build("val", train=False)
    untrained = evaluate(build_model(DEMO_MODEL), val_set, DEMO_MODEL.num_classes, InferenceConfig())
    untrained_miou = untrained.summary().mean_iou
    print(f"untrained model: mIoU {100 * untrained_miou:.2f}")

    summary = train(config)
    trained_miou = summary["mIoU"]

    model = load_model(Path(config.output_dir) / "model.safetensors")
    images = sorted((data_root / "images" / "val").glob("*.png"))[:4]
    segment_files(model, images, output / "overlays", InferenceConfig(), synthetic.CLASSES, synthetic.PALETTE)
    print(
        f"\nmIoU on {len(val_set)} validation scenes: untrained {100 * untrained_miou:.2f} → "
        f"trained {100 * trained_miou:.2f}\n"
        f"curves: {Path(config.output_dir) / 'curves.png'}; report: {Path(config.output_dir) / 'eval'}; "
        f"overlays: {output / 'overlays'}"
    )
    return {"untrained_mIoU": untrained_miou, "trained_mIoU": trained_miou}
