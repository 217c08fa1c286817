"""The shape of the installed package: imports, module sizes, where redis-py's internals live.

These walk the files of the package the tests import (the installed wheel), so
what is checked is what users get.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import django_connhealth

if TYPE_CHECKING:
    from collections.abc import Iterator

PACKAGE = Path(django_connhealth.__file__).parent
MAX_LINES = 350
#: Attributes and modules of redis-py that are not its public API.
REDIS_PY_PRIVATE = {
    "_sock",
    "_parser",
    "_buffer",
    "_reader",
    "_next_response",
    "_conn",
    "_checkpid",
    "_parsers",
    "_created_connections",
    "_available_connections",
    "_in_use_connections",
    "_connections",
}
#: The one module allowed to touch them.
REDIS_PY_ROOM = "django_connhealth.redispy"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(name: str) -> set[str]:
    """The app's modules that module ``name`` imports anywhere (functions and TYPE_CHECKING too)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            found.add(base)
            # `from django_connhealth import conf` imports the module django_connhealth.conf
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {module for module in found if module in MODULES and module != name}


def test_modules_are_found() -> None:
    assert {"django_connhealth", "django_connhealth.pool", "django_connhealth.probes"} <= set(
        MODULES
    )
    assert "site-packages" in str(PACKAGE)  # the wheel, not the checkout


def test_no_two_modules_import_each_other() -> None:
    """The app's imports form no cycle, not even through function-level imports."""
    graph = {name: imported_modules(name) for name in MODULES}
    # The package's __init__ runs before any submodule: an edge to it is to every module.
    for name, imports in graph.items():
        imports.discard("django_connhealth")
        assert name == "django_connhealth" or "django_connhealth" not in imports

    def cycle_from(start: str, path: list[str]) -> Iterator[list[str]]:
        for target in sorted(graph[start]):
            if target in path:
                yield [*path[path.index(target) :], target]
            elif target not in done:
                yield from cycle_from(target, [*path, target])
        done.add(start)

    done: set[str] = set()
    cycles = [cycle for name in sorted(graph) for cycle in cycle_from(name, [name])]
    assert cycles == []


def test_pool_does_not_know_publishing() -> None:
    assert "django_connhealth.publish" not in imported_modules("django_connhealth.pool")


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_is_longer_than_350_lines(name: str) -> None:
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines"


def private_redis_names(name: str) -> set[str]:
    """The private redis-py names module ``name`` mentions: attributes, strings, imports."""
    tree = ast.parse(MODULES[name].read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            found.add(node.attr)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.add(node.value)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.update(node.module.split("."))
    return found & REDIS_PY_PRIVATE


@pytest.mark.parametrize("name", sorted(set(MODULES) - {REDIS_PY_ROOM}))
def test_redis_py_internals_live_in_one_module(name: str) -> None:
    assert private_redis_names(name) == set()


def test_the_room_for_redis_py_internals_holds_them() -> None:
    """The check above would pass vacuously if it could not see them."""
    assert private_redis_names(REDIS_PY_ROOM) >= {"_sock", "_parser", "_conn", "_checkpid"}


def test_every_module_runs_with_python_m_on_its_own(tmp_path: Path) -> None:
    """``python -m`` of any module imports cleanly in a fresh interpreter, warnings as errors.

    No Django settings are configured: importing a module of the app needs none.
    """
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}

    def run(name: str) -> tuple[str, int, str]:
        # A package cannot run with -m (it has no __main__): it is imported instead.
        how = ["-c", f"import {name}"] if MODULES[name].name == "__init__.py" else ["-m", name]
        # From an empty directory, so that the installed package is the one imported.
        done = subprocess.run(
            [sys.executable, "-W", "error", "-X", "dev", *how],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        return name, done.returncode, done.stderr[-2000:]

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(run, sorted(MODULES)))
    assert [(name, code, err) for name, code, err in results if code or err] == []
