"""The words of a runtime's exception, for a message that names the file (one line, no C++ source paths)."""

from __future__ import annotations

import re


def runtime_words(error: BaseException) -> str:
    """A runtime's exception in one line: ``[ONNXRuntimeError] : 7 : INVALID_PROTOBUF : Load model ...``
    and OpenVINO's ``Exception from src/...cpp:84:`` lines lose their prefixes."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    lines = [line for line in lines if not re.match(r"(Exception from |Check '.*' failed at )?src/\S+:\d+:?$", line)]
    text = " ".join(lines)[:300] or type(error).__name__
    return re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", text)
