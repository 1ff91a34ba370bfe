"""Errors a user can act on, and the words the command line tells them in.

Every error of a file, an option or the disk is one of the standard exceptions (``OSError``,
``ValueError``) or a subclass of them (``CheckpointError`` and ``ConfigError`` here,
``DataFileError`` and ``RunFolderInUse`` next to what raises them); its message names the
file or the option and the problem. ``isnet.cli.commands.main`` prints that message instead of a
traceback (:func:`report_error`).
"""

from __future__ import annotations

import errno
import os
import re
import sys

# What the user can do about an operating-system error, by errno.
_OS_ERROR_HINTS = {
    errno.ENOSPC: "free some space, or write elsewhere",
    errno.EDQUOT: "free some space, or write elsewhere",
    errno.EROFS: "write elsewhere",
}


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: unreadable, unsafe, or not matching the model."""


class ConfigError(ValueError):
    """An option or configuration value that is not allowed.

    ``field`` is the (dotted) name of the configuration field, when there is one, so that the
    command line can name the option the value came from.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(f"{field} {message}" if field else message)
        self.field = field
        self.problem = message


def errno_name(number: int | None) -> str | None:
    """``28`` → ``"ENOSPC"``."""
    return errno.errorcode.get(number) if number is not None else None


def describe_os_error(error: OSError, path: object = None) -> str:
    """``"<path>: no space left on device (ENOSPC)"``: the file, the cause, its errno name.

    ``path`` is used when the error does not carry a file name (``write`` on an open file).
    """
    reason = (error.strerror or str(error) or type(error).__name__).rstrip(".")
    reason = reason[:1].lower() + reason[1:]
    name = errno_name(error.errno)
    text = f"{reason} ({name})" if name and name not in reason else reason
    hint = _OS_ERROR_HINTS.get(error.errno)
    if hint:
        text += f"; {hint}"
    where = error.filename if error.filename is not None else path
    if where is not None and error.filename2 is not None:
        where = f"{where} → {error.filename2}"
    return f"{where}: {text}" if where is not None else text


def os_error_behind(error: BaseException) -> OSError | None:
    """The ``OSError`` behind ``error``: itself, its cause or context, or one named in its message.

    ``torch.save`` reports a failed write as ``RuntimeError: [enforce fail at
    inline_container.cc:...]`` with the ``OSError`` of the file object as its context; the
    safetensors writer ends its message with ``(os error 28)``.
    """
    seen: set[int] = set()
    link: BaseException | None = error
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        if isinstance(link, OSError):
            return link
        link = link.__cause__ or link.__context__
    match = re.search(r"os error (\d+)\)", str(error))
    if match is None:
        return None
    number = int(match.group(1))
    return OSError(number, os.strerror(number))


# Optional dependencies and the extra of pyproject.toml that installs each.
OPTIONAL_MODULES = {"onnx": "onnx", "onnxruntime": "onnx", "openvino": "openvino", "nncf": "openvino",
                    "tensorboard": "tensorboard", "huggingface_hub": "hub", "starlette": "serve", "uvicorn": "serve",
                    "ray": "ray", "pycocotools": "annotations", "mlflow": "mlflow", "wandb": "wandb"}


def report_error(error: BaseException, prog: str) -> int:
    """Print ``error`` for a person (``prog: error: ...``) and return the exit status; re-raise bugs."""
    import torch

    hint = None
    if isinstance(error, ConfigError):
        status, message = 2, str(error)
    elif isinstance(error, (CheckpointError, FloatingPointError)):
        status, message = 1, str(error)
    elif isinstance(error, OSError):  # a DataFileError (an OSError without errno) included
        status = 1
        message = describe_os_error(error) if error.errno is not None else str(error)
    elif isinstance(error, torch.OutOfMemoryError | MemoryError):
        status, message = 1, f"out of memory: {str(error).splitlines()[0] if str(error) else type(error).__name__}"
        hint = "use smaller images or crops, a smaller batch, or --set grad_checkpointing=true for training"
    elif isinstance(error, (ValueError, KeyError)):
        status = 1
        message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
        hint = "run again with --debug for the traceback"
    elif isinstance(error, ModuleNotFoundError) and (error.name or "").split(".")[0] in OPTIONAL_MODULES:
        status, module = 1, (error.name or "").split(".")[0]
        message = f"this needs {module}, which is not installed: pip install 'isnet[{OPTIONAL_MODULES[module]}]'"
    elif isinstance(error, KeyboardInterrupt):
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    else:
        raise error
    message = _without_worker_traceback(str(message))
    print(f"{prog}: error: {message}", file=sys.stderr)
    if hint:
        print(f"({hint})", file=sys.stderr)
    return status


def _without_worker_traceback(message: str) -> str:
    """A data loader worker's error carries the worker's traceback in its message: keep the last line."""
    marker = "Original Traceback (most recent call last):"
    if marker not in message:
        return message
    last = [line for line in message.split(marker, 1)[1].splitlines() if line.strip()][-1]
    _, sep, text = last.partition(": ")
    return f"{text if sep else last} (in a data loader worker)"
