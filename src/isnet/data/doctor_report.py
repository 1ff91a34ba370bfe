"""The doctor's report: one screen of findings, and ``report.md`` with a per-class pixel-frequency chart."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from isnet.data.class_weights import median_frequency_from_counts
from isnet.data.doctor_scan import UNSPLIT, Diagnosis, SplitScan
from isnet.utils.atomic_files import write_atomically, write_text_atomically

SCREEN_FILES = 2
LABELS = {"error": "ERROR", "warning": "WARNING", "note": "note"}
CHART = "class_frequencies.png"


def _split_name(split: SplitScan) -> str:
    return split.name if split.name != UNSPLIT else "images (no split)"


def _headline(d: Diagnosis) -> list[str]:
    if d.record is not None:
        names = ", ".join(d.record.classes[:8]) + (", ..." if d.record.num_classes > 8 else "")
        classes = f"{d.record.num_classes} classes: {names}"
    else:
        classes = "classes unknown"
    splits = "   ".join(f"{_split_name(s)}: {len(s.pairing.pairs)} pairs" for s in d.splits) or "no splits found"
    encodings = Counter(mask.encoding for mask in d.masks)
    masks = ", ".join(f"{count} {encoding}" for encoding, count in encodings.most_common()) or "none read"
    return [f"{d.root} ({d.dataset}, {classes})", f"  {splits}", f"  masks: {masks}"]


def verdict(d: Diagnosis) -> str:
    errors = sum(finding.severity == "error" for finding in d.findings)
    if errors:
        return f"{errors} error(s): training would stop or be silently wrong; fix them first"
    return "clean: nothing found that would make training fail or go silently wrong"


def diagnosis_text(d: Diagnosis, report: Path | None = None) -> str:
    """What ``isnet data check`` prints: the dataset, each finding with what to do and an example file, the verdict."""
    lines = _headline(d)
    for finding in d.findings:
        lines.append(f"  {LABELS[finding.severity]:<7} {finding.problem}")
        lines.append(f"          → {finding.action}")
        if finding.files:
            more = f" (+{finding.count - SCREEN_FILES} more)" if finding.count > SCREEN_FILES else ""
            lines.append(f"          e.g. {'; '.join(finding.files[:SCREEN_FILES])}{more}")
    lines.append(verdict(d))
    if report is not None:
        lines.append(f"report: {report} ({CHART})")
    return "\n".join(lines)


def _class_table(d: Diagnosis) -> list[str]:
    splits = [s for s in d.splits if s.pixels is not None and len(s.pixels)]
    if d.record is None or not splits:
        return ["No class counts: the class list is unknown or no mask could be read as class indices."]
    train = d.train_split
    weights = median_frequency_from_counts(train.pixels, train.pixels_of_images_with) if train in splits else None
    header = ["class", *[f"{_split_name(s)} pixels (%)" for s in splits], *[f"{_split_name(s)} images" for s in splits]]
    if weights is not None:
        header.append("median-frequency weight")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for k, name in enumerate(d.record.classes):
        cells = [name]
        for split in splits:
            total = max(int(split.pixels.sum()), 1)
            cells.append(f"{split.pixels[k]:,} ({100 * split.pixels[k] / total:.2f})")
        cells += [str(int(split.images_with[k])) for split in splits]
        if weights is not None:
            cells.append(f"{weights[k]:.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    ignored = ", ".join(f"{_split_name(s)} {s.ignored:,}" for s in splits)
    lines += ["", f"Ignored pixels (value {d.record.ignore_index}): {ignored}."]
    return lines


def write_chart(d: Diagnosis, path: Path) -> Path:
    """Per-class pixel frequency (% of each split's labelled pixels), one bar per split; log scale when imbalanced."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    splits = [s for s in d.splits if s.pixels is not None and len(s.pixels) and s.pixels.sum()]
    names = list(d.record.classes) if d.record is not None else []
    figure, axis = plt.subplots(figsize=(max(6, 0.35 * len(names) * max(len(splits), 1) + 2), 4.5), dpi=100)
    width = 0.8 / max(len(splits), 1)
    positive = []
    for index, split in enumerate(splits):
        share = 100 * split.pixels / split.pixels.sum()
        positive += list(share[share > 0])
        axis.bar(np.arange(len(names)) + (index - (len(splits) - 1) / 2) * width, share, width, label=_split_name(split))
    if positive and max(positive) > 100 * min(positive):
        axis.set_yscale("log")
    bottom = axis.get_ylim()[0]
    for index, split in enumerate(splits):  # a class absent from a split is marked, not just a missing bar
        for k in np.flatnonzero(split.pixels == 0):
            axis.text(k + (index - (len(splits) - 1) / 2) * width, bottom, "absent", rotation=90, fontsize=7,
                      ha="center", va="bottom", color="tab:red")
    if splits:
        axis.legend()
    else:
        axis.text(0.5, 0.5, "no class counts (class list unknown or masks not index maps)", ha="center",
                  transform=axis.transAxes)
    axis.set_xticks(range(len(names)), names, rotation=90, fontsize=8 if len(names) < 40 else 4)
    axis.set_ylabel("pixels (% of the split's labelled pixels)")
    axis.set_title(f"class frequencies: {d.root.name}")
    figure.tight_layout()
    write_atomically(path, figure.savefig)
    plt.close(figure)
    return path


def write_report(d: Diagnosis, output: str | Path) -> Path:
    """Write ``report.md`` and the class-frequency chart into ``output``; return the report's path."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    write_chart(d, output / CHART)
    lines = [f"# Dataset check: {d.root}", "", *(line.strip() for line in _headline(d)), "", f"**{verdict(d)}**", "",
             "## Findings", ""]
    if not d.findings:
        lines.append("None.")
    for finding in d.findings:
        lines += [f"- **{LABELS[finding.severity]}**: {finding.problem}", f"  - what to do: {finding.action}"]
        for file in finding.files:
            lines.append(f"  - `{file}`")
        if finding.count > len(finding.files):
            lines.append(f"  - ... and {finding.count - len(finding.files)} more")
    modes = Counter(f"{image.mode} ({image.channels} channel{'s' if image.channels != 1 else ''})" for image in d.images)
    lines += ["", "## Images", "", ", ".join(f"{count} × {mode}" for mode, count in modes.most_common()) or "none read"]
    if d.channel_mean is not None:
        lines.append(f"\nMeasured on the training images: mean {list(d.channel_mean)}, std {list(d.channel_std)}.")
    values = d.values
    if values:
        shown = ", ".join(f"{value}: {count:,}" for value, count in sorted(values.items())[:40])
        lines += ["", "## Stored mask values (pixels)", "", shown + (" ..." if len(values) > 40 else "")]
    lines += ["", "## Classes", "", f"![class frequencies]({CHART})", "", *_class_table(d), ""]
    path = output / "report.md"
    return write_text_atomically(path, "\n".join(lines))
