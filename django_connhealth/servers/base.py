"""What every kind of server process tells sizing: numbers, where each came from, its role."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NoReturn, TypeAlias

from django_connhealth.errors import SettingError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

Role = Literal["web", "celery", "other"]
#: A number and the source it came from (``None``: this source does not set it).
Candidate: TypeAlias = tuple[str, int | None]


@dataclass(frozen=True)
class Concurrency:
    """Requests one process serves at once, how many such processes run, and what they are."""

    workers: int
    threads: int
    worker_class: str
    sources: Mapping[str, str] = field(default_factory=dict)
    role: Role = "other"

    def as_dict(self) -> dict[str, Any]:
        return {
            "workers": self.workers,
            "threads": self.threads,
            "worker_class": self.worker_class,
            "role": self.role,
            "sources": dict(self.sources),
        }


@dataclass(frozen=True)
class ServerConcurrency:
    """What one kind of server says about the process it runs: each number may be unset."""

    role: Role
    worker_class: str
    worker_class_source: str
    workers: Candidate = ("default", None)
    threads: Candidate = ("default", None)


def program(argv: Sequence[str]) -> str:
    """The name of the program ``argv`` runs: ``uvicorn`` for ``python -m uvicorn`` too."""
    if not argv or not argv[0]:
        return ""
    path = Path(argv[0])
    # `python -m NAME` puts NAME/__main__.py in argv[0]
    name = path.parent.name if path.name == "__main__.py" else path.name
    # console scripts on Windows, `celery.exe`; versioned scripts stay as they are
    return name.removesuffix(".exe")


class ArgumentParser(argparse.ArgumentParser):
    """Reads a server's command line; an option it cannot read is a SettingError."""

    def __init__(self, server: str, origin: str, *, allow_abbrev: bool) -> None:
        super().__init__(add_help=False, allow_abbrev=allow_abbrev, prog=server)
        self.server = server
        self.origin = origin

    def error(self, message: str) -> NoReturn:
        raise SettingError(
            f"{self.origin} could not be read as {self.server} arguments ({message})",
            f"fix it so that `{self.server}` itself accepts it.",
        )


def capped(candidate: Candidate, cap: int) -> Candidate:
    """Greenlets or coroutines counted as threads, at most ``cap`` of them."""
    value = candidate[1]
    if value is not None and value > cap:
        return ("CONNHEALTH_GREENLET_CAP", cap)
    return candidate


def pick(sources: dict[str, str], key: str, *candidates: Candidate) -> int:
    """The first candidate that is set; its source goes into ``sources[key]``."""
    for source, value in candidates:
        if value is not None:
            sources[key] = source
            return value
    raise AssertionError("the last candidate is always set")  # pragma: no cover


def pool_size(concurrency: Concurrency, headroom: int) -> int:
    """Connections one process's pool needs: one per thread, plus headroom."""
    return concurrency.threads + headroom
