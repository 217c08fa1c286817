"""The suite tests the installed distribution, and that holds every file of the package.

Under tox a wheel is built (from the sdist) and installed first; these
fail when the tests import the checkout instead (``python -m pytest`` from the
repository root, an editable install), or when the wheel lacks a file of the
package (a module setuptools did not find, package data such as ``py.typed``).
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

import django_connhealth

CHECKOUT = Path(__file__).resolve().parent.parent / "django_connhealth"
#: Where the tests start child processes: ``tests`` imported from there, links kept.
IMPORT_ROOT = Path(__file__).absolute().parent.parent
INSTALLED = Path(django_connhealth.__file__).resolve().parent


def package_files(package: Path) -> set[str]:
    """Paths of the files under ``package``, relative to it, bytecode left out."""
    return {
        path.relative_to(package).as_posix()
        for path in package.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


def test_package_is_imported_from_site_packages() -> None:
    site_packages = Path(sysconfig.get_path("purelib")).resolve()
    assert INSTALLED != CHECKOUT, f"the tests import the checkout: {django_connhealth.__file__}"
    assert INSTALLED.parent == site_packages, django_connhealth.__file__


def test_installed_package_has_every_file_of_the_checkout() -> None:
    checkout, installed = package_files(CHECKOUT), package_files(INSTALLED)
    assert sorted(checkout - installed) == [], "missing from the installed package"
    assert sorted(installed - checkout) == [], "installed, but not in the checkout"
    changed = [
        name
        for name in sorted(checkout & installed)
        if (CHECKOUT / name).read_bytes() != (INSTALLED / name).read_bytes()
    ]
    assert changed == [], "the installed copy differs from the checkout: rebuild the wheel"


def test_child_started_where_the_tests_start_children_imports_the_installed_package() -> None:
    # `python -c` and `python -m` put their cwd first on sys.path, as gunicorn does.
    result = subprocess.run(
        [sys.executable, "-c", "import django_connhealth; print(django_connhealth.__file__)"],
        cwd=IMPORT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert Path(result.stdout.strip()).resolve().parent == INSTALLED, IMPORT_ROOT
