"""Model directories in the Hugging Face Hub layout: ``config.json``, ``model.safetensors``, ``README.md``.

``save_pretrained(model, directory)`` writes one; ``from_pretrained(directory_or_repo)`` reads
it back, from a local directory or, when online, from a Hub repository (``huggingface_hub``
fetches it into its cache); ``push_to_hub(directory, repo_id)`` uploads one. The weights file
is one of our safetensors files, carrying the configuration and dataset record itself;
``config.json`` repeats them for people and tools that read the directory.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from torch import nn

from isnet.utils.json_text import load_json
from isnet.weights.checkpoint import CheckpointError, load_model, save_model, write_atomically
from isnet.weights.inspection import FILE_FORMAT, FORMAT_METADATA_KEY

CONFIG_FILE, WEIGHTS_FILE, CARD_FILE = "config.json", "model.safetensors", "README.md"


def _isnet_version() -> str:
    try:
        return version("isnet")
    except PackageNotFoundError:  # running from a source tree
        return "unknown"


def model_card(model: nn.Module, *, recipe: str | None = None, metrics: Mapping[str, float] | None = None) -> str:
    """A model card: what the model is, its classes, how it was trained and what it scores."""
    config, dataset = model.config, getattr(model, "dataset", None)
    lines = [
        "---",
        "library_name: isnet",
        "license: apache-2.0",
        "tags: [semantic-segmentation, isnet, pytorch]",
        "pipeline_tag: image-segmentation",
        "---",
        "",
        f"# ISNet ({config.backbone.type}-{config.backbone.depth}, {type(config.head).__name__})",
        "",
        "A semantic segmentation model of the `isnet` library (ISNet, ICCV 2021: image-level and "
        "semantic-level context). Load it with `isnet.weights.hub.from_pretrained(...)`.",
        "",
    ]
    if recipe:
        lines += [f"Trained with the recipe `{recipe}`.", ""]
    if metrics:
        lines += ["| metric | value |", "|---|---|"] + [f"| {name} | {value:.4g} |" for name, value in metrics.items()] + [""]
    if dataset is None:
        lines += [f"{config.num_classes} classes (no dataset record: the names are not known)."]
    else:
        lines += [f"Dataset record `{dataset.name}`, {dataset.num_classes} classes "
                  f"(ignore index {dataset.ignore_index}):", "", "| index | class | colour |", "|---|---|---|"]
        lines += [f"| {k} | {name} | {tuple(colour)} |" for k, (name, colour) in enumerate(zip(dataset.classes, dataset.palette))]
    return "\n".join(lines) + "\n"


# A Hub repository id: ``name`` or ``user/name`` (letters, digits, -, _ and .; no leading dot, no ``..``);
# anything else given to from_pretrained is a local path.
_HUB_REPO_ID = re.compile(r"(?!.*\.\.)[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


def save_pretrained(
    model: nn.Module,
    directory: str | Path,
    *,
    recipe: str | None = None,
    metrics: Mapping[str, float] | None = None,
) -> Path:
    """Write ``model`` as a model directory (weights, configuration, model card); returns it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_model(model, directory / WEIGHTS_FILE)
    dataset = getattr(model, "dataset", None)
    config = {FORMAT_METADATA_KEY: FILE_FORMAT, "isnet_version": _isnet_version(), "model": model.config.to_dict(),
              "dataset": None if dataset is None else json.loads(dataset.to_json())}
    write_atomically(directory / CONFIG_FILE, lambda temporary: temporary.write_text(json.dumps(config, indent=1)))
    card = model_card(model, recipe=recipe, metrics=metrics)
    write_atomically(directory / CARD_FILE, lambda temporary: temporary.write_text(card))
    return directory


def from_pretrained(directory_or_repo: str | Path, *, revision: str | None = None) -> nn.Module:
    """The model of a directory written by :func:`save_pretrained`, or of a Hub repository id.

    A local directory is used when it exists; otherwise the name is a Hub repository
    (``user/name``), fetched with ``huggingface_hub`` (needs the package and a network).
    """
    path = Path(directory_or_repo).expanduser()
    if not path.exists() and not _HUB_REPO_ID.fullmatch(str(directory_or_repo)):
        raise CheckpointError(f"{directory_or_repo}: no such model directory (and not a Hub repository id "
                              "such as user/name)")
    if not path.exists():
        try:
            from huggingface_hub import snapshot_download
        except ImportError:
            raise CheckpointError(
                f"{directory_or_repo}: no such directory; to fetch it from the Hugging Face Hub, "
                "install huggingface_hub (pip install huggingface_hub)"
            ) from None
        path = Path(snapshot_download(str(directory_or_repo), revision=revision, allow_patterns=[CONFIG_FILE, WEIGHTS_FILE, CARD_FILE]))
    if not path.is_dir() or not (path / WEIGHTS_FILE).is_file() or not (path / CONFIG_FILE).is_file():
        raise CheckpointError(f"{path}: not a model directory (expected {WEIGHTS_FILE} and {CONFIG_FILE} in it)")
    model = load_model(path / WEIGHTS_FILE)
    check_config_file(path / CONFIG_FILE, model)
    return model


def check_config_file(path: Path, model: nn.Module) -> None:
    """A :class:`CheckpointError` unless ``config.json`` is the one :func:`save_pretrained` writes for ``model``.

    The weights file carries the configuration and dataset record itself; ``config.json``
    repeats them for people and tools, so one that says otherwise (damaged, or edited by hand
    and no longer describing the weights) is refused rather than left to mislead them.
    """
    try:
        config = load_json(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path}: damaged model directory configuration: not JSON ({error})") from None
    except OSError as error:
        raise CheckpointError(f"{path}: unreadable: {error.strerror or error}") from None
    if not isinstance(config, dict) or set(config) - {FORMAT_METADATA_KEY} != {"isnet_version", "model", "dataset"} \
            or not isinstance(config["isnet_version"], str):
        raise CheckpointError(f"{path}: not the {CONFIG_FILE} of an isnet model directory (its entries are "
                              f"{FORMAT_METADATA_KEY}, isnet_version, model and dataset)")
    version = config.get(FORMAT_METADATA_KEY, FILE_FORMAT)  # absent: written before the file had a version; read alike
    if type(version) is not int or not 1 <= version <= FILE_FORMAT:
        raise CheckpointError(f"{path}: its {FORMAT_METADATA_KEY} entry {version!r} is not a format this version of "
                              f"isnet reads (1 to {FILE_FORMAT}; a newer isnet wrote it? upgrade isnet)")
    dataset = getattr(model, "dataset", None)
    described = {"model": json.loads(json.dumps(model.config.to_dict())),
                 "dataset": None if dataset is None else json.loads(dataset.to_json())}
    differing = [key for key, value in described.items() if config[key] != value]
    if differing:
        raise CheckpointError(f"{path}: its {' and '.join(differing)} entr{'ies differ' if len(differing) > 1 else 'y differs'} "
                              f"from what {WEIGHTS_FILE} carries (damaged, or edited by hand?)")


def push_to_hub(directory: str | Path, repo_id: str, *, private: bool = False) -> str:
    """Upload a model directory to the Hugging Face Hub (needs huggingface_hub, a network and a token)."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, private=private, exist_ok=True)
    return api.upload_folder(folder_path=str(directory), repo_id=repo_id).commit_url
