"""The training loop, top to bottom: data, model, optimizer, schedule, step, eval, checkpoint, resume.

Run it through ``isnet train`` (one process) or ``torchrun --nproc_per_node N -m isnet.cli
train`` (DDP with synchronised BatchNorm). A run lives in ``output_dir``:
``checkpoints/iter_*.pt`` (the newest ``keep_checkpoints``, written atomically, each with a
``.sha256`` checksum), ``metrics.csv``, ``curves.png``, ``events.*`` (TensorBoard, when
installed), ``eval/`` (the last evaluation report), ``model.safetensors`` (the final weights
with their config) and, when bad samples were skipped, ``bad_samples.txt``.

Starting again in the same ``output_dir`` resumes from the newest checkpoint exactly: the
model, optimizer, schedule, random state and position in the data are restored, and every
training sample is seeded by its position in the run, so the resumed run takes the same
crops, flips and dropout masks as an uninterrupted one. A run may be killed at any moment:
a checkpoint whose checksum fails is reported and the previous one is used, and what a
killed write left behind is deleted. docs/reliability.md lists every guarantee and its test.
"""

from __future__ import annotations

import csv
import json
import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Sampler

from .checkpoint import (
    CHECKSUM_SUFFIX,
    CheckpointError,
    load_state_dict_strict,
    load_training_checkpoint,
    remove_unfinished_writes,
    save_model,
    save_training_checkpoint,
    write_atomically,
)
from .config import ModelConfig
from .data.image import MAX_IMAGE_PIXELS, DataFileError
from .data.validate import BadSampleLog, check_dataset
from .distributed import DistributedContext, all_reduce_mean, barrier, convert_sync_batchnorm, init_distributed
from .inference import InferenceConfig
from .losses import DEFAULT_LOSS_WEIGHTS, segmentation_loss
from .recipes import DataConfig
from .segmentor import build_model


@dataclass(frozen=True)
class TrainConfig:
    model: ModelConfig
    data: DataConfig = field(default_factory=DataConfig)
    batch_size: int = 16  # global: summed over processes and accumulation steps
    grad_accum_steps: int = 1
    lr: float = 0.01
    min_lr: float = 0.0
    poly_power: float = 0.9
    momentum: float = 0.9
    weight_decay: float = 5e-4
    max_iters: int = 160_000
    loss_weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_LOSS_WEIGHTS))
    precision: str = "fp32"  # fp32, bf16 (CPU or GPU), fp16 (GPU)
    channels_last: bool = True  # model and images in the layout oneDNN and tensor cores want (same results)
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

    def __post_init__(self) -> None:
        for name, allowed in (("nonfinite", ("stop", "skip")), ("check_data", ("headers", "full", "off"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"TrainConfig.{name} is {getattr(self, name)!r}; choose one of {', '.join(allowed)}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, default=str)


# ----------------------------------------------------------------------------- data order


def sample_seed(run_seed: int, position: int) -> int:
    """The augmentation seed of the sample at ``position`` in the run's global sample stream."""
    return (run_seed * 1_000_003 + position * 7919 + 12345) % (2**31 - 1)


class RunSampler(Sampler):
    """An endless, resumable stream of ``(index, seed)`` for one process.

    The run's global stream visits the dataset in a fresh permutation each epoch (seeded by
    the run seed and the epoch). Global batch ``i`` is stream positions
    ``[i·B, (i+1)·B)``; process ``r`` of ``W`` takes its contiguous ``B/W`` share, so the
    union over processes is the single-process batch. Starting at ``start_batch`` is how a
    resumed run continues where it stopped.
    """

    def __init__(self, dataset_size: int, batch_size: int, *, seed: int, rank: int, world_size: int, start_batch: int) -> None:
        self.size, self.batch_size, self.seed = dataset_size, batch_size, seed
        self.rank, self.world_size, self.start_batch = rank, world_size, start_batch
        self.per_process = batch_size // world_size

    def _permutation(self, epoch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        return torch.randperm(self.size, generator=generator)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        batch = self.start_batch
        epoch, order = -1, None
        while True:
            first = batch * self.batch_size + self.rank * self.per_process
            for position in range(first, first + self.per_process):
                if position // self.size != epoch:
                    epoch = position // self.size
                    order = self._permutation(epoch)
                yield int(order[position % self.size]), sample_seed(self.seed, position)
            batch += 1


class SeededSamples(Dataset):
    """Looks samples up by ``(index, seed)``, seeding the dataset's augmentation first.

    A sample whose files fail to load raises the error naming the file, unless a
    ``bad_samples`` log is given: then it is recorded there and replaced by the next sample
    in dataset order, drawn with the same seed, so a resumed run makes the same replacement.
    """

    def __init__(self, dataset: Dataset, bad_samples: BadSampleLog | None = None) -> None:
        self.dataset = dataset
        self.bad_samples = bad_samples

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        index, seed = key
        reseed = getattr(getattr(self.dataset, "transform", None), "reseed", None)
        for offset in range(len(self.dataset)):
            if reseed is not None:
                reseed(seed)
            try:
                return self.dataset[(index + offset) % len(self.dataset)]
            except DataFileError as error:
                if self.bad_samples is None:
                    raise
                self.bad_samples.record(str(error))
        raise DataFileError(f"all {len(self.dataset)} training samples failed to load")


# ----------------------------------------------------------------------------- checkpoints


def checkpoint_dir(output_dir: str | Path) -> Path:
    return Path(output_dir) / "checkpoints"


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Checkpoints, oldest first (a write in progress is a ``.tmp`` and not listed)."""
    return sorted(checkpoint_dir(output_dir).glob("iter_*.pt"))


def newest_usable_checkpoint(
    output_dir: Path, model_config: ModelConfig, report: Callable[[str], None]
) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint that passes its checksum and loads, with its state; None for a new run.

    A damaged checkpoint is reported (``report(message)``, naming the file and the problem)
    and the previous one tried. If checkpoints exist but none can be used, or they were made
    for another model configuration, the run stops rather than silently starting over.
    """
    checkpoints = list_checkpoints(output_dir)
    for path in reversed(checkpoints):
        try:
            state = load_training_checkpoint(path)
            saved = ModelConfig.from_json(state["config"])
        except CheckpointError as error:
            report(f"cannot resume from {error}; trying the previous checkpoint")
            continue
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            report(f"cannot resume from {path}: unreadable model configuration ({error}); trying the previous one")
            continue
        if not same_model(saved, model_config):
            differences = "\n  ".join(config_differences(asdict(saved), asdict(model_config)))
            raise CheckpointError(
                f"{path}: checkpoint of another model configuration (checkpoint vs this run):\n  {differences}\n"
                f"choose another output_dir, or the configuration that made {output_dir}"
            )
        return path, state
    if checkpoints:
        raise CheckpointError(
            f"{output_dir}: none of its {len(checkpoints)} checkpoint(s) can be used (see above); move "
            f"{checkpoint_dir(output_dir)} away to start the run over"
        )
    return None


def same_model(saved: ModelConfig, current: ModelConfig) -> bool:
    """Whether a checkpoint of ``saved`` can resume as ``current``: equal but for how the
    backward pass is computed (activation checkpointing may be switched on to resume a run
    that ran out of memory)."""

    def weights_only(config: ModelConfig) -> ModelConfig:
        return replace(config, backbone=replace(config.backbone, checkpoint_activations=False))

    return weights_only(saved) == weights_only(current)


def set_aside(checkpoint: Path) -> Path:
    """Rename a damaged checkpoint (and its checksum) to ``*.corrupt``: kept for inspection, never loaded."""
    kept = checkpoint.with_name(checkpoint.name + ".corrupt")
    sidecar = checkpoint.with_name(checkpoint.name + CHECKSUM_SUFFIX)
    if sidecar.exists():
        sidecar.replace(kept.with_name(kept.name + CHECKSUM_SUFFIX))
    checkpoint.replace(kept)
    return kept


def config_differences(saved: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list[str]:
    """``"head.channels: 512 vs 256"`` for every field that differs between two config dicts."""
    differences = []
    for key in sorted(set(saved) | set(current)):
        old, new = saved.get(key), current.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            differences += config_differences(old, new, f"{prefix}{key}.")
        elif old != new:
            differences.append(f"{prefix}{key}: {old!r} vs {new!r}")
    return differences


def sgd(parameters: Iterable[nn.Parameter], **options: float) -> torch.optim.SGD:
    """SGD updating all parameters in one fused kernel; the foreach kernels where fused is unavailable."""
    parameters = list(parameters)
    try:
        return torch.optim.SGD(parameters, **options, fused=True)
    except (RuntimeError, ValueError):
        return torch.optim.SGD(parameters, **options, foreach=True)


def poly_lr(config: TrainConfig, iteration: int) -> float:
    progress = 1 - iteration / config.max_iters
    return (config.lr - config.min_lr) * progress**config.poly_power + config.min_lr


def autocast(config: TrainConfig, device: torch.device):
    if config.precision == "fp32":
        return nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[config.precision]
    return torch.autocast(device.type, dtype=dtype)


# ----------------------------------------------------------------------------- logging


class MetricsLog:
    """``metrics.csv`` (one row per logged iteration or evaluation), TensorBoard and curves."""

    FIELDS = ["iteration", "lr", "loss", "loss_out", "loss_stage1", "loss_aux", "mIoU", "seconds"]

    def __init__(self, output_dir: Path, resume_iteration: int, enabled: bool) -> None:
        self.path = output_dir / "metrics.csv"
        self.output_dir = output_dir
        self.enabled = enabled
        self.writer = None
        if not enabled:
            return
        rows = self.rows()
        # A resumed run repeats the iterations after its checkpoint: drop their old rows.
        rows = [row for row in rows if int(row["iteration"]) <= resume_iteration]

        def rewrite(temporary: Path) -> None:
            with open(temporary, "w", newline="") as handle:
                writer = csv.DictWriter(handle, self.FIELDS)
                writer.writeheader()
                writer.writerows(rows)

        write_atomically(self.path, rewrite)  # a kill here must not lose the run's history
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(output_dir), purge_step=resume_iteration + 1)
        except ImportError:  # TensorBoard is an optional extra
            self.writer = None

    def rows(self) -> list[dict[str, str]]:
        if not self.path.exists():
            return []
        with open(self.path, newline="") as handle:
            # A row cut short by a kill has missing fields (None): it is dropped.
            return [row for row in csv.DictReader(handle) if None not in row.values() and row["iteration"].isdigit()]

    def write(self, iteration: int, **values: float) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", newline="") as handle:
            csv.DictWriter(handle, self.FIELDS).writerow({"iteration": iteration, **values})
        if self.writer is not None:
            for name, value in values.items():
                self.writer.add_scalar(name, value, iteration)
            self.writer.flush()

    def plot(self) -> None:
        if self.enabled:
            from .visualize import plot_training_curves

            plot_training_curves(self.rows(), self.output_dir / "curves.png")


# ----------------------------------------------------------------------------- the loop


def train(config: TrainConfig) -> dict[str, Any]:
    """Train (or resume) the run described by ``config``; return the final evaluation summary."""
    context = init_distributed(config.device)
    device = context.device
    output_dir = Path(config.output_dir)
    if config.batch_size % (context.world_size * config.grad_accum_steps):
        raise ValueError(
            f"batch_size {config.batch_size} must divide into {context.world_size} process(es) × "
            f"{config.grad_accum_steps} accumulation step(s)"
        )
    micro_batch = config.batch_size // (context.world_size * config.grad_accum_steps)
    dtype = torch.get_default_dtype()  # float32, or float64 for numerical checks
    if config.deterministic:
        torch.use_deterministic_algorithms(True)
    torch.manual_seed(config.seed + context.rank)

    def report(message: str) -> None:
        if context.is_main:
            print(message, file=sys.stderr, flush=True)

    # Data: every file checked before the first step, so that a bad one cannot stop the run midway.
    bad_samples = BadSampleLog(output_dir / "bad_samples.txt")
    datasets = {}
    for split, is_train in ((config.data.train_split, True), (config.data.val_split, False)):
        dataset = config.data.build(split, train=is_train)
        dataset.max_pixels = config.max_image_pixels
        if config.check_data != "off":
            dataset = check_dataset(
                dataset,
                name=f"{split} ({'training' if is_train else 'evaluation'})",
                full=config.check_data == "full",
                skip_bad=config.skip_bad_samples,
                log=bad_samples if context.is_main else None,  # every process finds the same files
                verbose=context.is_main and config.progress,
            )
        datasets[is_train] = dataset
    train_set, val_set = datasets[True], datasets[False]
    class_names = list(val_set.info.classes)

    # Model and optimizer.
    model = build_model(config.model).to(device)
    if config.weights_backbone:
        from .backbones.pretrained import load_imagenet_weights

        load_imagenet_weights(model.backbone, config.weights_backbone)
    if context.enabled:
        model = convert_sync_batchnorm(model, device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = sgd(model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)

    # Resume, from the newest checkpoint that is complete and intact.
    if context.is_main:
        for unfinished in remove_unfinished_writes(checkpoint_dir(output_dir)) + remove_unfinished_writes(output_dir):
            report(f"removed {unfinished}, left by a write that was interrupted")
    barrier()
    start_iteration = 0
    resumed = newest_usable_checkpoint(output_dir, config.model, report)
    if resumed is not None:
        path, state = resumed
        load_state_dict_strict(model, state["model"], source=path)
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"][context.rank] if context.rank < len(state["rng"]) else state["rng"][0])
        start_iteration = int(state["iteration"])
        if context.is_main:
            print(f"resuming {output_dir} from iteration {start_iteration} ({path.name})", flush=True)
    barrier()  # every process has read its checkpoint before damaged ones are moved
    if resumed is not None and context.is_main:
        for damaged in list_checkpoints(output_dir):
            if damaged.name > resumed[0].name:
                report(f"moved {set_aside(damaged)} aside; the run will write a new {damaged.name}")
    if context.is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "config.json").write_text(config.to_json())
    log = MetricsLog(output_dir, start_iteration, context.is_main)

    trained = DistributedDataParallel(model) if context.enabled else model
    sampler = RunSampler(
        len(train_set),
        config.batch_size // config.grad_accum_steps,
        seed=config.seed,
        rank=context.rank,
        world_size=context.world_size,
        start_batch=start_iteration * config.grad_accum_steps,
    )
    loader = DataLoader(
        SeededSamples(train_set, bad_samples if config.skip_bad_samples else None),
        batch_size=micro_batch,
        sampler=sampler,
        num_workers=config.num_workers,
        pin_memory=device.type == "cuda",
        drop_last=True,
        persistent_workers=config.num_workers > 0,
        generator=torch.Generator().manual_seed(config.seed),  # keeps the global RNG for dropout
    )
    batches = iter(loader)

    progress = None
    if context.is_main and config.progress:
        from .progress import progress_bar

        progress = progress_bar(total=config.max_iters, initial=start_iteration, desc="train")
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    started = time.perf_counter()
    skipped_in_a_row = 0
    model.train()
    for iteration in range(start_iteration, config.max_iters):
        lr = poly_lr(config, iteration)
        for group in optimizer.param_groups:
            group["lr"] = lr
        if config.nonfinite == "skip":  # a skipped step must not leave NaN in the BatchNorm statistics
            buffers = [buffer.detach().clone() for buffer in model.buffers()]

        totals: dict[str, torch.Tensor] = {}
        for micro_step in range(config.grad_accum_steps):
            sample = next(batches)
            images = sample["image"].to(device, dtype, non_blocking=True, memory_format=memory_format)
            labels = sample["label"].to(device, non_blocking=True)
            last_micro_step = micro_step == config.grad_accum_steps - 1
            sync = nullcontext() if last_micro_step or not context.enabled else trained.no_sync()
            with sync:
                with autocast(config, device):
                    outputs = trained(images)
                losses = segmentation_loss(outputs, labels, weights=config.loss_weights)
                (losses["total"] / config.grad_accum_steps).backward()
            for name, value in losses.items():
                totals[name] = totals.get(name, 0) + value.detach() / config.grad_accum_steps
        done = iteration + 1
        loss = all_reduce_mean(totals["total"])  # every process takes the same decision
        if torch.isfinite(loss):
            optimizer.step()
            skipped_in_a_row = 0
        elif config.nonfinite == "stop":
            raise FloatingPointError(
                f"non-finite loss {loss.item()} at iteration {done}; "
                f"the last good checkpoint is in {checkpoint_dir(output_dir)}"
            )
        else:
            skipped_in_a_row += 1
            for buffer, saved in zip(model.buffers(), buffers):
                buffer.copy_(saved)
            if skipped_in_a_row >= config.max_nonfinite_skips:
                raise FloatingPointError(
                    f"{skipped_in_a_row} non-finite losses in a row, the last ({loss.item()}) at iteration {done}; "
                    f"the last good checkpoint is in {checkpoint_dir(output_dir)}"
                )
            report(f"iteration {done}: non-finite loss {loss.item()}; step skipped ({skipped_in_a_row} in a row)")
        optimizer.zero_grad(set_to_none=True)

        if done % config.log_interval == 0 or done == config.max_iters:
            values = {name: all_reduce_mean(value).item() for name, value in totals.items()}
            log.write(
                done,
                lr=lr,
                loss=values["total"],
                loss_out=values.get("out", math.nan),
                loss_stage1=values.get("stage1", math.nan),
                loss_aux=values.get("aux", math.nan),
                seconds=time.perf_counter() - started,
            )
            if progress is not None:
                progress.set_postfix(loss=f"{values['total']:.3f}", lr=f"{lr:.2e}")
        if progress is not None:
            progress.update(1)

        if done % config.checkpoint_interval == 0 or done == config.max_iters:
            save_run_checkpoint(output_dir, model, optimizer, done, context, config.keep_checkpoints)

        if config.eval_interval and done % config.eval_interval == 0 and done < config.max_iters:
            summary = run_evaluation(model, val_set, class_names, config, context, done, output_dir)
            log.write(done, mIoU=summary["mIoU"], seconds=time.perf_counter() - started)
            log.plot()

    if progress is not None:
        progress.close()
    # The final evaluation runs after the loop, so that a run killed after its last checkpoint still gets it.
    summary = run_evaluation(model, val_set, class_names, config, context, config.max_iters, output_dir)
    log.write(config.max_iters, mIoU=summary["mIoU"], seconds=time.perf_counter() - started)
    log.plot()
    if context.is_main:
        save_model(model, output_dir / "model.safetensors", extra_metadata={"classes": json.dumps(class_names)})
    barrier()
    return summary


def save_run_checkpoint(
    output_dir: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    iteration: int,
    context: DistributedContext,
    keep: int,
) -> None:
    """Save the run's state at ``iteration`` (process 0 writes; the random state of every process is kept)."""
    rng = torch.get_rng_state()
    if context.enabled:
        gathered = [torch.empty_like(rng) for _ in range(context.world_size)]
        torch.distributed.all_gather_object(gathered, rng)
        rng_states = gathered
    else:
        rng_states = [rng]
    if context.is_main:
        state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "iteration": iteration,
            "rng": rng_states,
            "config": model.config.to_json(),
        }
        save_training_checkpoint(checkpoint_dir(output_dir) / f"iter_{iteration:08d}.pt", state)
        for old in list_checkpoints(output_dir)[:-keep]:
            old.unlink()
            old.with_name(old.name + CHECKSUM_SUFFIX).unlink(missing_ok=True)
    barrier()


def run_evaluation(
    model: nn.Module,
    dataset: Dataset,
    class_names: list[str],
    config: TrainConfig,
    context: DistributedContext,
    iteration: int,
    output_dir: Path,
) -> dict[str, Any]:
    from .evaluation import evaluate, write_report

    matrix = evaluate(
        model,
        dataset,
        config.model.num_classes,
        config.eval,
        device=context.device,
        rank=context.rank,
        world_size=context.world_size,
        progress=context.is_main and config.progress,
    )
    summary = {"mIoU": matrix.summary().mean_iou}
    if context.is_main:
        summary = write_report(matrix, class_names, output_dir / "eval", title=f"iteration {iteration}")
        print(f"iteration {iteration}: mIoU {100 * summary['mIoU']:.2f}")
    return summary


def with_overrides(config: Any, overrides: dict[str, Any]) -> Any:
    """Replace dataclass fields by dotted names, at any depth.

    E.g. ``{"lr": 0.02, "data.root": "/data/ade", "model.backbone.checkpoint_activations": True}``.
    """
    nested: dict[str, dict[str, Any]] = {}
    flat: dict[str, Any] = {}
    for key, value in overrides.items():
        outer, dot, inner = key.partition(".")
        if dot:
            nested.setdefault(outer, {})[inner] = value
        else:
            flat[key] = value
    known = {item.name for item in fields(config)}
    unknown = sorted((set(flat) | set(nested)) - known)
    if unknown:
        raise ValueError(
            f"{type(config).__name__} has no field {', '.join(map(repr, unknown))}; its fields: {', '.join(sorted(known))}"
        )
    for outer, values in nested.items():
        flat[outer] = with_overrides(getattr(config, outer), values)
    return replace(config, **flat)
