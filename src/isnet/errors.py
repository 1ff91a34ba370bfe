"""Errors a user can act on, and the words the command line tells them in.

Every error of a file, an option or the disk is one of the standard exceptions (``OSError``,
``ValueError``) or a subclass of them defined next to what raises it (``CheckpointError``,
``DataFileError``, ``ConfigError``, ``RunFolderInUse``); its message names the file or the
option and the problem. ``isnet.cli.main`` prints that message instead of a traceback.
"""

from __future__ import annotations

import errno
import os
import re

# What the user can do about an operating-system error, by errno.
_OS_ERROR_HINTS = {
    errno.ENOSPC: "free some space, or write elsewhere",
    errno.EDQUOT: "free some space, or write elsewhere",
    errno.EROFS: "write elsewhere",
}


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
