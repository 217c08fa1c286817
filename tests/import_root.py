"""``python tests/import_root.py DIR``: make DIR hold links to ``tests/`` and ``testproject/``.

tox puts DIR on ``PYTHONPATH`` before it runs pytest, and the tests start their
child processes (gunicorn, uvicorn, ``python -m ...``, ``manage.py``) in it, so
every process imports ``tests`` and ``testproject`` from this checkout but
``django_connhealth`` from the wheel installed in the tox environment: the
checkout's copy is on no path. (From the repository root, ``python -m`` and
gunicorn put the root itself first on ``sys.path``, package and all.)
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The checkout's packages that are not installed, and nothing else.
PACKAGES = ("tests", "testproject")


def make_import_root(target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for name in PACKAGES:
        link = target / name
        if link.is_symlink():
            link.unlink()
        link.symlink_to(ROOT / name, target_is_directory=True)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: python {sys.argv[0]} DIR")
    make_import_root(Path(sys.argv[1]))
