"""Django's command-line utility for the demo project.

From the repository root: ``python -m testproject.manage <command>``
(``python testproject/manage.py <command>`` works too).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testproject.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    if not __package__:
        # Run as a script: Python put testproject/ on sys.path; the project
        # package needs its parent there instead (as given, links kept: the
        # directory tests/import_root.py makes has only tests/ and testproject/).
        sys.path[0] = str(Path(__file__).absolute().parent.parent)
    main()
