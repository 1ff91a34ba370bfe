"""One benchmark configuration in a fresh process, for its peak memory: ``python -m benchmarks.child SPEC``.

``SPEC`` is JSON: ``contender`` (published, ours; onnxruntime or openvino with ``graph``, an
exported ``.onnx`` or ``isnet quantize``'s ``.xml``), ``precision`` (fp32, bf16, fp16, int8),
``num_classes``, ``size`` [H, W], ``batch``, ``weights`` (a state-dict file), ``runs``,
``mode`` (infer, train), ``grad_checkpointing``, ``device``, ``threads`` and optionally ``logits``
(a ``.npy`` path for the last output). Prints one JSON line: the seconds of each run, the
peak resident memory of the runs (MiB, weights included) and the resident memory before them.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import torch

from isnet.deploy.runtimes import RUNTIMES

GRAPH_RUNTIMES = {runtime.profile_name: name for name, runtime in RUNTIMES.items()}  # contender → ``--runtime``


def main(argv: list[str] | None = None) -> int:
    from benchmarks import measure
    from benchmarks.contenders import build_contender, train_step
    from benchmarks.workload import PRESET_FOR_CLASSES, benchmark_image
    from isnet.model.segmentor import build_model
    from isnet.training.losses import segmentation_loss
    from isnet.weights.presets import get_config

    spec = json.loads((argv or sys.argv[1:])[0])
    device = spec.get("device", "cpu")
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    config = get_config(PRESET_FOR_CLASSES[spec["num_classes"]], num_classes=spec["num_classes"])
    model = build_model(config).set_grad_checkpointing(bool(spec.get("grad_checkpointing")))
    model.load_state_dict(torch.load(spec["weights"], map_location="cpu", weights_only=True))
    model = model.to(device).eval()
    images = benchmark_image(*spec["size"], batch=spec.get("batch", 1)).to(device)

    if spec.get("mode", "infer") == "train":
        labels = torch.randint(0, spec["num_classes"], (images.shape[0], *images.shape[2:]), generator=torch.Generator().manual_seed(0))
        step = train_step(model, spec["contender"], spec["precision"], images, labels.to(device), segmentation_loss)
        run = step
    elif spec["contender"] in GRAPH_RUNTIMES:  # the exported graph (float32, or INT8 from isnet quantize)
        from isnet.deploy.fast_paths import graph_runtime

        contender = graph_runtime(spec["graph"], GRAPH_RUNTIMES[spec["contender"]], threads=spec.get("threads"))
        run = lambda: contender.logits(images)  # noqa: E731
    else:
        contender = build_contender(model, spec["contender"], spec["precision"])
        run = lambda: contender.logits(images)  # noqa: E731
    del model

    if device == "cpu":
        measure.reset_peak_rss()
        before = measure.current_rss_mb()
    else:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated() / 2**20
    seconds = []
    output = None
    for _ in range(spec.get("runs", 1)):
        measure.synchronize(device)
        start = time.perf_counter()
        output = run()
        measure.synchronize(device)
        seconds.append(time.perf_counter() - start)
    peak = measure.peak_rss_mb() if device == "cpu" else torch.cuda.max_memory_allocated() / 2**20
    if spec.get("logits") and isinstance(output, torch.Tensor):
        np.save(spec["logits"], output.detach().float().cpu().numpy())
    print(json.dumps({"seconds": seconds, "peak_mb": peak, "before_mb": before}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
