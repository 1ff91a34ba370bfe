"""What a training run is: the model, the data, the schedule, and how faults are handled."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from torch.utils.data import Dataset

from isnet.data import (
    DATASETS,
    Augmentation,
    DatasetInfo,
    evaluation_transforms,
    open_dataset,
    training_transforms,
)
from isnet.data.folder import folder_record
from isnet.data.image import MAX_IMAGE_PIXELS
from isnet.inference.engine import InferenceConfig
from isnet.model.config import ModelConfig
from isnet.training.kit_options import check_kit_options
from isnet.training.losses import DEFAULT_LOSS_WEIGHTS
from isnet.utils.errors import ConfigError
from isnet.utils.precision import Precision, require_device
from isnet.weights.checkpoint import config_bounds_problems

Size = tuple[int, int]
RUN_CONFIG_FORMAT_KEY = "isnet_format"
RUN_CONFIG_FORMAT = 1  # the layout of TrainConfig.to_json (config.json); files written before it have no key


# Validators: each raises a ConfigError naming the field, the rule and the value.


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def require_int(name: str, value: Any, *, minimum: int = 1) -> None:
    """An integer ≥ ``minimum`` (a count: 1; an interval where 0 means never: 0)."""
    if not _is_int(value) or value < minimum:
        rule = "a positive integer" if minimum == 1 else f"an integer ≥ {minimum}"
        raise ConfigError(f"must be {rule}, not {value!r}", field=name)


def require_number(name: str, value: Any, *, positive: bool = False, at_most: float | None = None) -> None:
    """A finite number ≥ 0 (> 0 when ``positive``; ≤ ``at_most`` when given)."""
    finite = _is_number(value) and math.isfinite(value)
    if not finite or value < 0 or (positive and value == 0) or (at_most is not None and value > at_most):
        rule = "a finite number " + ("> 0" if positive else "≥ 0") + (f" and ≤ {at_most}" if at_most is not None else "")
        raise ConfigError(f"must be {rule}, not {value!r}", field=name)


def require_size(name: str, value: Any, *, optional: bool = False) -> None:
    """Two positive integers, e.g. (height, width) (or None when ``optional``)."""
    if optional and value is None:
        return
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 2 or not all(
        _is_int(n) and n > 0 for n in value
    ):
        raise ConfigError(f"must be two positive integers such as [512, 512], not {value!r}", field=name)


def require_choice(name: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ConfigError(f"is {value!r}; choose one of {', '.join(choices)}", field=name)


def check_inference_config(name: str, config: InferenceConfig) -> None:
    """The evaluation protocol: a known mode, windows and strides of positive sizes, positive scales."""
    require_choice(f"{name}.mode", config.mode, ("whole", "slide"))
    require_size(f"{name}.crop", config.crop)
    require_size(f"{name}.stride", config.stride)
    if not config.scales:
        raise ConfigError("must name at least one scale", field=f"{name}.scales")
    for scale in config.scales:
        require_number(f"{name}.scales", scale, positive=True, at_most=16)


@dataclass(frozen=True)
class DataConfig:
    """Which dataset, where, and how its training crops and test images are sized.

    ``dataset`` names a record of :data:`isnet.data.DATASETS` or is "folder" (class names
    from the folder's ``classes.txt``). ``crop_size`` is (height, width); ``fit_size`` /
    ``eval_fit_size`` are the (long side, short side) box images are resized to fit, before the
    random rescale in training; ``augment`` is the rest of the training augmentation (flip,
    rotation, photometric jitter, blur, the crop's class-balance rule). :meth:`of` takes every
    value from a dataset record.
    """

    dataset: str
    root: str
    crop_size: Size = (512, 512)
    fit_size: Size | None = None
    scale_range: tuple[float, float] = (0.5, 2.0)
    eval_fit_size: Size | None = None
    train_split: str = "train"
    val_split: str = "val"
    augment: Augmentation = Augmentation()

    def __post_init__(self) -> None:
        for name in ("dataset", "root", "train_split", "val_split"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ConfigError(f"must be a non-empty text, not {getattr(self, name)!r}", field=name)
        require_size("crop_size", self.crop_size)
        require_size("fit_size", self.fit_size, optional=True)
        require_size("eval_fit_size", self.eval_fit_size, optional=True)
        low_high = self.scale_range
        if not isinstance(low_high, Sequence) or len(low_high) != 2:
            raise ConfigError(f"must be two numbers (smallest, largest scale), not {low_high!r}", field="scale_range")
        for scale in low_high:
            require_number("scale_range", scale, positive=True, at_most=16)
        if low_high[0] > low_high[1]:
            raise ConfigError(f"must be (smallest, largest), not {tuple(low_high)!r}", field="scale_range")

    @classmethod
    def of(cls, record: DatasetInfo, **overrides: Any) -> DataConfig:
        """The data settings of ``record``: its training defaults and its test resize.

        A record that is not one of :data:`~isnet.data.DATASETS` is a folder's (``dataset``
        "folder"); without training defaults the crop and rescale keep this class's defaults.
        """
        defaults = record.training
        named = DATASETS.get(record.name) == record
        config = cls(dataset=record.name if named else "folder", root=defaults.root if defaults else ".",
                     eval_fit_size=record.test.fit_size)
        if defaults is not None:
            config = replace(config, crop_size=defaults.crop_size, fit_size=defaults.fit_size,
                             scale_range=defaults.scale_range, train_split=defaults.train_split,
                             val_split=defaults.val_split, augment=Augmentation.of_pipeline(defaults.pipeline))
        return replace(config, **overrides)

    def dataset_record(self) -> DatasetInfo:
        """The record of the dataset: a named one, or the folder's (``dataset.json`` or ``classes.txt``)."""
        if self.dataset == "folder":
            return folder_record(self.root)
        if self.dataset not in DATASETS:
            raise ValueError(f"unknown dataset {self.dataset!r}: expected one of {', '.join((*DATASETS, 'folder'))}")
        return DATASETS[self.dataset]

    def build(self, split: str, *, train: bool) -> Dataset:
        """The dataset of ``split`` with the training or the evaluation transform."""
        record = self.dataset_record()
        if train:
            transform = training_transforms(self.augment, self.crop_size, self.fit_size, self.scale_range,
                                            record.flip_pairs, rgb=record.in_channels == 3)
        else:
            transform = evaluation_transforms(self.eval_fit_size, record.test.resize_to)
        return open_dataset(self.dataset, self.root, split, transform)


@dataclass(frozen=True)
class TrainConfig:
    model: ModelConfig
    data: DataConfig
    batch_size: int = 16  # global: summed over processes and accumulation steps
    grad_accum_steps: int = 1
    lr: float = 0.01
    min_lr: float = 0.0
    poly_power: float = 0.9
    momentum: float = 0.9
    weight_decay: float = 5e-4
    max_iters: int = 160_000
    loss_weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_LOSS_WEIGHTS))
    precision: Precision = Precision.FP32  # fp32, bf16 (CPU or GPU), fp16 (GPU), auto (bf16 where this machine's peaks say it pays)
    channels_last: bool = True  # model and images in the layout oneDNN and tensor cores want (same results)
    # Recompute backbone activations in the backward pass instead of storing them: less memory
    # for large crops, about one more backbone forward of time, the same results.
    grad_checkpointing: bool = False
    eval: InferenceConfig = InferenceConfig()
    eval_interval: int = 4000  # 0: only at the end
    checkpoint_interval: int = 1000
    keep_checkpoints: int = 2
    log_interval: int = 10
    seed: int = 0
    deterministic: bool = False
    num_workers: int = 2
    weights_backbone: str | None = None
    output_dir: str = "runs/isnet"
    device: str | None = None  # default: cuda when available
    progress: bool = True
    # Faults (docs/reliability.md).
    nonfinite: str = "stop"  # a NaN/inf loss: "stop" (raise), or "skip" the step and go on
    max_nonfinite_skips: int = 10  # with "skip": stop after this many skipped steps in a row
    check_data: str = "headers"  # before training: "headers" (open every file), "full" (decode every file), "off"
    skip_bad_samples: bool = False  # drop unusable samples (listed in bad_samples.txt) instead of stopping
    max_image_pixels: int = MAX_IMAGE_PIXELS  # larger images are refused (decompression bombs)
    # Fine-tuning: start from these weights (a file or released weights' name), loading every
    # tensor whose shape fits and initialising the rest (e.g. classifiers for other classes).
    # Weights of which most tensors do not fit (another architecture) are refused unless
    # init_from_partial.
    init_from: str | None = None
    init_from_partial: bool = False
    # Per-class loss weights for imbalanced data: K values, or "median_frequency" to compute
    # them from the training labels (median frequency balancing), or None.
    class_weights: str | tuple[float, ...] | None = None
    # The practitioner's kit (README "Training on your data"): the objective, a weighted sum such
    # as "ce+0.5*dice" (training/loss_terms.py); an exponential moving average of the weights
    # (its decay, e.g. 0.999), evaluated and saved as model.safetensors; the evaluation score
    # that chooses best.safetensors, and how many evaluations without improvement stop the run
    # (0: never); experiment trackers (mlflow, wandb, tensorboard) and where they write.
    loss: str = "ce"
    ema: float | None = None
    best_on: str = "mIoU"
    early_stop: int = 0
    trackers: tuple[str, ...] = ()
    tracking_uri: str | None = None

    def __post_init__(self) -> None:
        """Every value within its range, so that a bad one stops the run before it starts."""
        for name, allowed in (("nonfinite", ("stop", "skip")), ("check_data", ("headers", "full", "off")),
                              ("precision", tuple(map(str, Precision)))):
            require_choice(name, getattr(self, name), allowed)
        object.__setattr__(self, "precision", Precision.of(self.precision))
        for name in ("batch_size", "grad_accum_steps", "max_iters", "checkpoint_interval", "keep_checkpoints",
                     "log_interval", "max_nonfinite_skips", "max_image_pixels"):
            require_int(name, getattr(self, name))
        for name in ("eval_interval", "num_workers", "seed"):  # eval_interval 0: only at the end
            require_int(name, getattr(self, name), minimum=0)
        if self.seed >= 2**63:
            raise ConfigError(f"must be below 2**63, not {self.seed}", field="seed")
        if self.batch_size % self.grad_accum_steps:
            raise ConfigError(f"{self.batch_size} does not divide into {self.grad_accum_steps} accumulation steps",
                              field="batch_size")
        require_number("lr", self.lr, positive=True)
        require_number("min_lr", self.min_lr, at_most=self.lr)
        require_number("poly_power", self.poly_power)
        require_number("momentum", self.momentum, at_most=1)
        require_number("weight_decay", self.weight_decay)
        if not isinstance(self.loss_weights, dict) or not self.loss_weights:
            raise ConfigError(f"must map output names to weights, not {self.loss_weights!r}", field="loss_weights")
        for name, weight in self.loss_weights.items():
            require_choice("loss_weights", name, tuple(DEFAULT_LOSS_WEIGHTS))
            require_number(f"loss_weights.{name}", weight)
        check_inference_config("eval", self.eval)
        self._check_eval_scales()
        problems = config_bounds_problems(self.model)
        if problems:
            raise ConfigError(f"model.{problems[0]}")
        try:
            require_device(self.precision, self.device)
        except ValueError as error:
            raise ConfigError(str(error), field="precision") from None
        if isinstance(self.class_weights, str) and self.class_weights != "median_frequency":
            raise ConfigError(f"is {self.class_weights!r}: give K numbers or median_frequency", field="class_weights")
        if isinstance(self.class_weights, tuple) and len(self.class_weights) != self.model.num_classes:
            raise ConfigError(f"has {len(self.class_weights)} values for {self.model.num_classes} classes",
                              field="class_weights")
        check_kit_options(self)

    def _check_eval_scales(self) -> None:
        """Every evaluation scale keeps the images ≥ 1 pixel: they are fitted to ``data.eval_fit_size``,
        else evaluated as they are (at least a training crop, ``data.crop_size``, is the assumption)."""
        name, size = ("data.eval_fit_size", self.data.eval_fit_size) if self.data.eval_fit_size else \
            ("data.crop_size", self.data.crop_size)
        scale, side = min(self.eval.scales), min(size)
        if math.floor(scale * side) < 1:
            raise ConfigError(f"{scale} would shrink a side of {side} pixels ({name}) to nothing: the evaluation "
                              f"scales must be ≥ {1 / side:.3g} for images of that size", field="eval.scales")

    def to_json(self) -> str:
        """The run's configuration as ``config.json`` and the checkpoints' start record hold it, with the
        version of this layout (:data:`RUN_CONFIG_FORMAT`, under ``isnet_format``)."""
        data = asdict(self)
        data["model"] = self.model.to_dict()
        return json.dumps({RUN_CONFIG_FORMAT_KEY: RUN_CONFIG_FORMAT, **data}, sort_keys=True, default=str)
