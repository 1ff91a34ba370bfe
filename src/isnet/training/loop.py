"""The training loop, top to bottom: data, model, optimizer, schedule, step, eval, checkpoint, resume.

Run it through ``isnet train`` (one process) or ``torchrun --nproc_per_node N -m isnet.cli
train`` (DDP with synchronised BatchNorm). A run lives in ``output_dir``:
``checkpoints/iter_*.pt`` (the newest ``keep_checkpoints``, written atomically, each with a
``.sha256`` checksum), ``metrics.csv``, ``curves.png``, ``events.*`` (TensorBoard, when
installed), ``eval/`` (the last evaluation report), ``model.safetensors`` (the final weights
with their config), ``config.json`` (the run as it started; ``config_changes.txt`` lists what
each resume changed) and, when bad samples were skipped, ``bad_samples.txt``.

Starting again in the same ``output_dir`` resumes from the newest checkpoint exactly: the
model, optimizer, GradScaler, schedule, CPU and CUDA random states and position in the data
are restored (:mod:`isnet.training.run_state`; another dataset is refused unless allowed), and every
training sample is seeded by its position in the run, so the resumed run takes the same
crops, flips and dropout masks as an uninterrupted one. A run may be killed at any moment:
a checkpoint whose checksum fails is reported and the previous one is used, and what a
killed write left behind is deleted. docs/reliability.md lists every guarantee and its test.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import nullcontext
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset

from isnet.data.base import IGNORE_INDEX
from isnet.data.class_weights import median_frequency_weights
from isnet.data.folder import record_file
from isnet.data.sampling import RunSampler, SeededSamples
from isnet.data.validate import BadSampleLog, check_dataset
from isnet.evaluation import evaluate, write_report
from isnet.inference.predictor import ModulePredictor
from isnet.model.segmentor import build_model
from isnet.training.config import DataConfig, TrainConfig
from isnet.evaluation.boundary import BoundaryIoU
from isnet.evaluation.validation_loss import ValidationLoss
from isnet.training.kit import TrainingKit, validation_overlays
from isnet.training.kit_options import check_best_on
from isnet.training.loss_terms import loss_criterion
from isnet.training.losses import segmentation_loss
from isnet.training.metrics_log import MetricsLog
from isnet.training.run_folder import (
    forget_new_run_folder,
    last_good_checkpoint,
    list_checkpoints,
    lock_for_all,
    save_run_checkpoint,
    start_or_resume,
)
from isnet.utils.distributed import (
    DistributedContext,
    all_reduce_mean,
    barrier,
    convert_sync_batchnorm,
    from_first_process,
    init_distributed,
)
from isnet.utils.atomic_files import write_text_atomically
from isnet.utils.errors import ConfigError
from isnet.utils.machine import resolve_training_precision, slow_bf16_note
from isnet.utils.precision import Precision, autocast, require_device
from isnet.utils.progress import progress_bar
from isnet.weights.imagenet import load_imagenet_weights

__all__ = ["DataConfig", "TrainConfig", "list_checkpoints", "train"]


def train(config: TrainConfig, *, allow_changed_data: bool = False) -> dict[str, Any]:
    """Train (or resume: on other data only if ``allow_changed_data``) the run of ``config``; return its final summary."""
    context = init_distributed(config.device)
    device, output_dir = context.device, Path(config.output_dir)
    created = lock_for_all(output_dir, context)  # before anything is read or written: a second run refuses at once
    micro_batch = micro_batch_size(config, context.world_size)  # checked before anything runs
    torch.use_deterministic_algorithms(config.deterministic)
    torch.manual_seed(config.seed + context.rank)

    report = partial(report_on_main, context)
    config = with_measured_precision(config, device, report)
    # Data: every file checked before the first step, so that a bad one cannot stop the run midway.
    try:  # a run that cannot start leaves no run folder behind
        bad_samples = BadSampleLog(output_dir / "bad_samples.txt")
        train_set = checked_dataset(config, config.data.train_split, True, context, bad_samples)
        val_set = checked_dataset(config, config.data.val_split, False, context, bad_samples)
    except BaseException:
        forget_new_run_folder(output_dir, created, context)
        raise

    # Model, optimizer, loss.
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    model = training_model(config, context, memory_format)
    optimizer = sgd(model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=config.precision is Precision.FP16)  # fp16 gradients underflow
    class_weights = loss_class_weights(config, train_set, context)
    kit = TrainingKit(config, model, context, output_dir)  # EMA, best-on / early stop, trackers

    # Resume from the newest checkpoint that is complete and intact, or start (from init_from).
    start_iteration, as_started = start_or_resume(config, model, optimizer, scaler, train_set, context, report,
                                                  allow_changed_data, kit=kit)
    if context.is_main and start_iteration == 0:  # the run as it started: a resume never rewrites it
        output_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomically(output_dir / "config.json", config.to_json())
    log = MetricsLog(output_dir, start_iteration, context.is_main)
    trained = DistributedDataParallel(model) if context.enabled else model
    batches = training_batches(train_set, config, context, micro_batch, start_iteration,
                               bad_samples if config.skip_bad_samples else None)
    show_progress = context.is_main and config.progress
    progress = progress_bar(total=config.max_iters, initial=start_iteration, desc="train") if show_progress else None

    started = time.perf_counter()
    skipped_in_a_row = 0
    model.train()
    for iteration in range(start_iteration, kit.end_iteration()):
        done = iteration + 1
        lr = poly_lr(config, iteration)
        for group in optimizer.param_groups:
            group["lr"] = lr
        if config.nonfinite == "skip":  # a skipped step must not leave NaN in the BatchNorm statistics
            buffers = [buffer.detach().clone() for buffer in model.buffers()]

        totals = accumulate_gradients(trained, batches, config, context, memory_format, scaler, class_weights)

        # Step, unless the loss is not finite (every process takes the same decision).
        loss = all_reduce_mean(totals["total"])
        if torch.isfinite(loss):
            scaler.step(optimizer)
            scaler.update()
            kit.after_step(model)
            skipped_in_a_row = 0
        elif config.nonfinite == "stop":
            raise FloatingPointError(f"non-finite loss {loss.item()} at iteration {done}; "
                                     f"the last good checkpoint is {last_good_checkpoint(output_dir)}")
        else:
            skipped_in_a_row += 1
            if skipped_in_a_row >= config.max_nonfinite_skips:
                raise FloatingPointError(
                    f"{skipped_in_a_row} non-finite losses in a row, the last ({loss.item()}) at iteration {done}; "
                    f"the last good checkpoint is {last_good_checkpoint(output_dir)}"
                )
            for buffer, saved in zip(model.buffers(), buffers):
                buffer.copy_(saved)
            report(f"iteration {done}: non-finite loss {loss.item()}; step skipped ({skipped_in_a_row} in a row)")
        optimizer.zero_grad(set_to_none=True)

        # Log, checkpoint, evaluate.
        if done % config.log_interval == 0 or done == config.max_iters:
            values = {name: all_reduce_mean(value).item() for name, value in totals.items()}
            log.write_losses(done, lr, values, seconds=time.perf_counter() - started)
            kit.log(done, lr, values)
            if progress is not None:
                progress.set_postfix(loss=f"{values['total']:.3f}", lr=f"{lr:.2e}")
        if progress is not None:
            progress.update(1)
        stop = evaluation_due(config, done) and evaluate_and_choose(model, val_set, config, context, done, kit, log, started)[1]
        if done % config.checkpoint_interval == 0 or done == config.max_iters or stop:  # after the evaluation: its choice
            save_run_checkpoint(output_dir, model, optimizer, done, context, config.keep_checkpoints, scaler=scaler,
                                started=as_started, kit=kit)
        if stop:
            break

    if progress is not None:
        progress.close()
    # The final evaluation runs after the loop, so that a run killed after its last checkpoint still gets it.
    summary = kit.final_summary or evaluate_and_choose(model, val_set, config, context, kit.end_iteration(), kit, log,
                                                       started)[0]  # an early stop has just evaluated
    kit.save_final(model)
    barrier()
    return summary


def with_measured_precision(config: TrainConfig, device: torch.device, report: Callable[[str], None]) -> TrainConfig:
    """``config`` with ``precision="auto"`` resolved: bf16 only where this machine's measured
    peaks say it pays (:func:`isnet.utils.machine.training_precision`), one answer for all processes."""
    if config.precision is Precision.BF16:
        note = slow_bf16_note(device)
        if note:
            report(f"note: {note}")
    if config.precision is not Precision.AUTO:
        return config
    config = replace(config, precision=from_first_process(resolve_training_precision("auto", device)))
    report(f"precision auto: training in {config.precision}")
    return config


def report_on_main(context: DistributedContext, message: str) -> None:
    """A message for the person running the run, from the first process only."""
    if context.is_main:
        print(message, file=sys.stderr, flush=True)


def accumulate_gradients(
    model: nn.Module,
    batches: Iterator[dict[str, Any]],
    config: TrainConfig,
    context: DistributedContext,
    memory_format: torch.memory_format,
    scaler: torch.amp.GradScaler,
    class_weights: torch.Tensor | None,
) -> dict[str, torch.Tensor]:
    """Forward and backward over ``grad_accum_steps`` micro-batches; the losses, averaged over them.

    Under DDP the gradients are synchronised on the last micro-batch only. ``scaler`` scales
    the loss in fp16 (a no-op otherwise).
    """
    totals: dict[str, torch.Tensor] = {}
    for micro_step in range(config.grad_accum_steps):
        sample = next(batches)
        images = sample["image"].to(context.device, torch.get_default_dtype(), non_blocking=True,
                                    memory_format=memory_format)
        labels = sample["label"].to(context.device, non_blocking=True)
        last_micro_step = micro_step == config.grad_accum_steps - 1
        with nullcontext() if last_micro_step or not context.enabled else model.no_sync():
            with autocast(config.precision, context.device):
                outputs = model(images)
            losses = segmentation_loss(outputs, labels, weights=config.loss_weights, class_weights=class_weights,
                                       criterion=loss_criterion(config.loss))
            scaler.scale(losses["total"] / config.grad_accum_steps).backward()
        for name, value in losses.items():
            totals[name] = totals.get(name, 0) + value.detach() / config.grad_accum_steps
    return totals


def training_model(config: TrainConfig, context: DistributedContext, memory_format: torch.memory_format) -> nn.Module:
    """The model to train: built, backbone initialised, synchronised BatchNorm under DDP, in ``memory_format``.

    Its ``dataset`` record is the evaluation data's, with the test resize the run evaluates
    at, so that classes, colours and protocol travel with the checkpoints.
    """
    require_device(config.precision, context.device)
    model = build_model(config.model).to(context.device).set_grad_checkpointing(config.grad_checkpointing)
    record = config.data.dataset_record()
    model.dataset = replace(record, test=replace(record.test, fit_size=config.data.eval_fit_size))
    if config.weights_backbone:
        load_imagenet_weights(model.backbone, config.weights_backbone)
    if context.enabled:
        model = convert_sync_batchnorm(model, context.device)
    return model.to(memory_format=memory_format)


def loss_class_weights(config: TrainConfig, dataset: Dataset, context: DistributedContext) -> torch.Tensor | None:
    """``class_weights`` as a tensor: as given, or by median frequency balancing of the training labels."""
    if config.class_weights is None:
        return None
    weights = config.class_weights
    if weights == "median_frequency":
        weights = median_frequency_weights(dataset, progress=context.is_main and config.progress)
        if context.is_main:
            shown = ", ".join(f"{name} {w:.2f}" for name, w in zip(dataset.info.classes, weights))
            print(f"class weights (median frequency balancing): {shown}", flush=True)
    return torch.tensor(weights, dtype=torch.float32, device=context.device)


def micro_batch_size(config: TrainConfig, world_size: int) -> int:
    """Samples per process and accumulation step."""
    if config.batch_size % (world_size * config.grad_accum_steps):
        raise ValueError(
            f"batch_size {config.batch_size} must divide into {world_size} process(es) × "
            f"{config.grad_accum_steps} accumulation step(s)"
        )
    return config.batch_size // (world_size * config.grad_accum_steps)


def checked_dataset(
    config: TrainConfig, split: str, train: bool, context: DistributedContext, bad_samples: BadSampleLog
) -> Dataset:
    """The training or evaluation split, with every file checked (``check_data``) before use."""
    dataset = config.data.build(split, train=train)
    if dataset.info.num_classes != config.model.num_classes:
        where = record_file(config.data.root) if config.data.dataset == "folder" else config.data.root
        raise ConfigError(
            f"the model has {config.model.num_classes} classes (model.num_classes) but the {split} data "
            f"({config.data.dataset}: {where}) has {dataset.info.num_classes}: "
            f"{', '.join(dataset.info.classes[:12])}{', ...' if dataset.info.num_classes > 12 else ''}; "
            f"set --set model.num_classes={dataset.info.num_classes} (with --init-from to fine-tune) or use other data"
        )
    if dataset.info.in_channels != config.model.backbone.in_channels:
        raise ValueError(
            f"the model takes {config.model.backbone.in_channels} image channels (model.backbone.in_channels) but "
            f"the {split} data ({config.data.dataset} at {config.data.root}) has {dataset.info.in_channels} "
            f"(the length of mean/std in its record); set --set model.backbone.in_channels={dataset.info.in_channels}"
        )
    dataset.max_pixels = config.max_image_pixels
    if not train:  # --best-on iou:CLASS names one of its classes
        check_best_on(config.best_on, num_classes=config.model.num_classes, classes=tuple(dataset.info.classes))
    if config.check_data == "off":
        return dataset
    return check_dataset(
        dataset,
        name=f"{split} ({'training' if train else 'evaluation'})",
        full=config.check_data == "full",
        skip_bad=config.skip_bad_samples,
        log=bad_samples if context.is_main else None,  # every process finds the same files
        verbose=context.is_main and config.progress,
    )


def training_batches(
    dataset: Dataset,
    config: TrainConfig,
    context: DistributedContext,
    micro_batch: int,
    start_iteration: int,
    bad_samples: BadSampleLog | None,
) -> Iterator[dict[str, Any]]:
    """This process's share of the run's batches, from ``start_iteration`` on (see RunSampler)."""
    sampler = RunSampler(
        len(dataset),
        config.batch_size // config.grad_accum_steps,
        seed=config.seed,
        rank=context.rank,
        world_size=context.world_size,
        start_batch=start_iteration * config.grad_accum_steps,
    )
    loader = DataLoader(
        SeededSamples(dataset, bad_samples),
        batch_size=micro_batch,
        sampler=sampler,
        num_workers=config.num_workers,
        pin_memory=context.device.type == "cuda",
        drop_last=True,
        persistent_workers=config.num_workers > 0,
        generator=torch.Generator().manual_seed(config.seed),  # keeps the global RNG for dropout
    )
    return iter(loader)


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


def evaluation_due(config: TrainConfig, done: int) -> bool:
    """Whether the run evaluates after ``done`` iterations (the final evaluation follows the loop)."""
    return bool(config.eval_interval) and done % config.eval_interval == 0 and done < config.max_iters


def evaluate_and_choose(model: nn.Module, dataset: Dataset, config: TrainConfig, context: DistributedContext,
                        iteration: int, kit: TrainingKit, log: MetricsLog, started: float) -> tuple[dict[str, Any], bool]:
    """Evaluate (the weight average, with ``--ema``), log, and let the kit choose ``best.safetensors``;
    the summary, and whether to stop early."""
    summary = run_evaluation(kit.evaluated_model(model), dataset, config, context, iteration, Path(config.output_dir))
    log.write(iteration, mIoU=summary["mIoU"], seconds=time.perf_counter() - started)
    log.plot()
    return summary, kit.after_evaluation(summary, iteration, model, summary.pop("overlays", ()))


def run_evaluation(
    model: nn.Module,
    dataset: Dataset,
    config: TrainConfig,
    context: DistributedContext,
    iteration: int,
    output_dir: Path,
) -> dict[str, Any]:
    """Evaluate on ``dataset`` (with boundary IoU and the validation loss); the main process
    writes the report, and with trackers a few overlays (``summary["overlays"]``)."""
    ignore_index = IGNORE_INDEX  # what the readers turn the record's stored ignore value into
    boundary, loss = BoundaryIoU(config.model.num_classes, ignore_index), ValidationLoss(config.eval, ignore_index)
    matrix = evaluate(
        ModulePredictor(model),  # evaluated in eval mode, left training
        dataset,
        config.model.num_classes,
        config.eval,
        device=context.device,
        rank=context.rank,
        world_size=context.world_size,
        progress=context.is_main and config.progress,
        observers=[boundary, loss],
    )
    summary = {"mIoU": matrix.summary().mean_iou}
    if context.is_main:
        summary = write_report(matrix, list(dataset.info.classes), output_dir / "eval", title=f"iteration {iteration}",
                               boundary=boundary)
        summary["overlays"] = validation_overlays(model, dataset, config, output_dir / "eval" / "overlays")
        print(f"iteration {iteration}: mIoU {100 * summary['mIoU']:.2f}, boundary IoU "
              f"{100 * boundary.mean():.2f}, loss {loss.value():.4f}")
    summary["loss"] = loss.value()
    return summary
