"""Writing for people on a terminal and for programs everywhere else."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def print_json(value: Any) -> None:
    """Machine output: JSON on stdout, flushed, and nothing else there."""
    sys.stdout.write(json.dumps(value, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def print_json_lines(values: list[Any]) -> None:
    for value in values:
        sys.stdout.write(json.dumps(value, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def terminal() -> Console:
    return Console()


def errors() -> Console:
    return Console(stderr=True)


def fail(message: str) -> int:
    """A one-line reason on stderr and the usage/configuration exit code."""
    sys.stderr.write(f"casewatch: {message}\n")
    sys.stderr.flush()
    return 2
