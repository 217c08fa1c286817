"""``make bench`` entry point, run with the system ``python3``.

1. Installs ``wrk`` and ``hyperfine`` (and ``redis-server``) with apt-get when they
   are missing and we are root; without them the runner falls back to Python's
   own load generator and timing loop, and says so in RESULTS.md.
2. Creates ``bench/.venv`` with the project (editable) and bench/requirements.txt,
   reinstalling only when those files changed.
3. Execs bench/run.py with that virtualenv's Python.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
VENV = BENCH / ".venv"
PYTHON = VENV / "bin" / "python"
STAMP = VENV / ".bench-installed"
REQUIREMENTS = BENCH / "requirements.txt"
APT_TOOLS = {"wrk": "wrk", "hyperfine": "hyperfine", "redis-server": "redis-server"}


def say(text: str) -> None:
    print(f"bench: {text}", flush=True)


def install_tools() -> None:
    missing = [package for tool, package in APT_TOOLS.items() if shutil.which(tool) is None]
    if not missing:
        return
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        say(f"missing {', '.join(missing)} and cannot apt-get them (not root or no apt): "
            f"falling back to Python where possible.")  # fmt: skip
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    say(f"installing {', '.join(missing)} with apt-get")
    try:
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=True, timeout=300)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
            env=env, check=True, timeout=300, stdout=subprocess.DEVNULL,
        )  # fmt: skip
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        say(f"apt-get failed ({exc}): falling back to Python where possible.")


def fingerprint() -> str:
    digest = hashlib.sha256()
    for path in (REQUIREMENTS, ROOT / "pyproject.toml"):
        digest.update(path.read_bytes())
    digest.update(sys.version.encode())
    return digest.hexdigest()


def ensure_venv() -> None:
    wanted = fingerprint()
    if PYTHON.exists() and STAMP.exists() and STAMP.read_text() == wanted:
        return
    say(f"creating {VENV.relative_to(ROOT)} (the project, gunicorn, the peers, profilers)")
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pip = [str(PYTHON), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "-e", str(ROOT), "-r", str(REQUIREMENTS)], check=True, cwd=ROOT)
    STAMP.write_text(wanted)


def main() -> int:
    install_tools()
    try:
        ensure_venv()
    except subprocess.CalledProcessError as exc:
        say(f"could not build the benchmark virtualenv: {exc}")
        return 1
    os.chdir(ROOT)
    os.execv(str(PYTHON), [str(PYTHON), str(BENCH / "run.py"), *sys.argv[1:]])


if __name__ == "__main__":
    sys.exit(main())
