"""The demo project (testproject/) run the way users run it: real gunicorn, real redis-server.

Each test starts its servers as child processes and stops and reaps them, pass or
fail. Timeouts are generous: a loaded two-core machine boots gunicorn slowly.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from django_connhealth.conf import client_host
from testproject.demo import fan_out
from tests.helpers import STOP_TIMEOUT, gunicorn, pools_of_every_worker
from tests.servers import child_env, stop_group

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tests.conftest import RedisDB

ROOT = Path(__file__).resolve().parent.parent
#: Seconds the demo may take from start to exit with --duration 3.
DEMO_TIMEOUT = 60.0


def running(pid: int) -> bool:
    """Whether process ``pid`` runs; a zombie has exited and only waits to be reaped."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process took the pid
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no /proc here
        return True
    return stat.rpartition(")")[2].split()[0] != "Z"


def wait_until_stopped(pids: Sequence[int]) -> list[int]:
    """Those of ``pids`` still running after up to STOP_TIMEOUT seconds."""
    deadline = time.monotonic() + STOP_TIMEOUT
    while (left := [pid for pid in pids if running(pid)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


# -------------------------------------------------------------------- manage / check


@pytest.mark.parametrize(
    "command",
    [
        ["-m", "django", "check", "--settings", "testproject.settings"],
        ["-m", "testproject.manage", "check"],
        ["testproject/manage.py", "check"],
    ],
    ids=["django-check", "manage-module", "manage-script"],
)
def test_check_finds_no_issues(command: list[str], redis_db: RedisDB, tmp_path: Path) -> None:
    env = child_env(REDIS_URL=redis_db.url, TESTPROJECT_VAR_DIR=str(tmp_path))
    result = subprocess.run(
        [sys.executable, *command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


def test_settings_without_redis_url_say_what_to_set(tmp_path: Path) -> None:
    # Loading the settings, not `manage.py check`: which error check reports first
    # when settings fail to load depends on set order (PYTHONHASHSEED).
    load = "from django.conf import settings; settings.CACHES"
    result = subprocess.run(
        [sys.executable, "-c", load],
        cwd=ROOT,
        env=child_env(
            DJANGO_SETTINGS_MODULE="testproject.settings", TESTPROJECT_VAR_DIR=str(tmp_path)
        ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "ImproperlyConfigured: REDIS_URL is not set" in result.stderr


# ---------------------------------------------------------------------------- gunicorn


@pytest.mark.gunicorn
def test_gunicorn_command_line_sizes_each_worker_pool(redis_db: RedisDB, tmp_path: Path) -> None:
    env = child_env(REDIS_URL=redis_db.url, TESTPROJECT_VAR_DIR=str(tmp_path))
    args = ["--preload", "-w", "2", "--threads", "4", "-k", "gthread"]
    with gunicorn(args, env, tmp_path / "gunicorn.log", workers=2) as (base, master, workers):
        statuses = [status for status, _ in fan_out([f"{base}/work"] * 200, 16)]
        assert statuses == [200] * 200, collections.Counter(statuses)
        answers = pools_of_every_worker(base, workers)
        clients = redis_db.server.client_list()

    assert len(workers) == 2
    assert master.pid not in workers
    assert sorted(answers) == sorted(workers)
    for pid, answer in answers.items():
        assert answer["concurrency"] == {
            "workers": 2,
            "threads": 4,
            "worker_class": "gthread",
            "sources": {"workers": "gunicorn", "threads": "gunicorn", "worker_class": "gunicorn"},
        }
        assert answer["sources"]["max_connections"] == "derived"
        assert "redis://" not in json.dumps(answer)
        [pool] = answer["pools"]
        assert pool["alias"] == "default"
        assert pool["max_connections"] == 6
        assert 1 <= pool["created"] <= 6, (pid, pool)
        # One connection per thread, and one for the headroom's work (publishing figures).
        assert pool["peak_in_use"] <= 6, (pid, pool)
        assert pool["in_use"] <= 1, (pid, pool)  # no request holds one; a publish may
        assert pool["timeouts"] == 0, (pid, pool)

    # The server's view: connections named by the worker that opened them, none
    # by the master (under --preload it loaded settings, but opened nothing).
    ours = [client for client in clients if client["db"] == str(redis_db.db)]
    names = collections.Counter(client["name"] for client in ours)
    host = client_host({})
    assert set(names) == {f"connhealth:{host}:{pid}:default" for pid in workers}, names
    assert not any(f":{master.pid}:" in name for name in names)
    for pid in workers:
        assert 1 <= names[f"connhealth:{host}:{pid}:default"] <= 6, names


# -------------------------------------------------------------------------------- demo


DEMO = [sys.executable, "-m", "testproject.demo"]


def demo_pids(out: str) -> list[int]:
    """Every pid the demo reported starting: redis-server, gunicorn and its workers."""
    redis_pid = re.search(r"^redis-server\s+pid (\d+)", out, re.MULTILINE)
    master_pid = re.search(r"^gunicorn\s+pid (\d+)", out, re.MULTILINE)
    worker_pids = re.search(r"^gunicorn workers: pids ([\d, ]+)$", out, re.MULTILINE)
    assert redis_pid, out
    assert master_pid, out
    assert worker_pids, out
    workers = [int(pid) for pid in worker_pids.group(1).split(", ")]
    assert len(workers) == 2, out
    return [int(redis_pid.group(1)), int(master_pid.group(1)), *workers]


def assert_demo_output(out: str) -> None:
    base = re.search(r"http://127\.0\.0\.1:\d+", out)
    assert base, out
    assert f"{base.group()}/ " in out
    assert f"{base.group()}/pool " in out
    assert f"{base.group()}/health/live " in out
    assert f"{base.group()}/health/ready " in out
    assert "$ python -m django connhealth --settings testproject.settings" in out
    assert re.search(r"fleet: 2 processes, \d+ connections, pools up to 12 connections", out), out
    assert "Traffic: 300 requests to / and /work from 8 threads" in out
    assert "300 answered 200." in out
    assert "2 workers (from gunicorn) x 4 threads (from gunicorn)" in out
    assert "max_connections 6 = 4 threads + headroom 2" in out


@pytest.mark.gunicorn
def test_demo_runs_for_its_duration_and_leaves_no_process() -> None:
    env = child_env()  # no REDIS_URL: the demo starts its own redis-server
    with subprocess.Popen(
        [*DEMO, "--duration", "3"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a group of its own, for stop_group() to kill if need be
    ) as demo:
        try:
            out, err = demo.communicate(timeout=DEMO_TIMEOUT)
        except subprocess.TimeoutExpired:
            stop_group(demo, STOP_TIMEOUT)  # the demo stops its servers on SIGTERM
            out, err = demo.communicate()
            pytest.fail(f"the demo ran past {DEMO_TIMEOUT:g} s:\n{out}\n{err}")

    assert demo.returncode == 0, f"{out}\n{err}"
    assert "Traceback" not in err, err
    assert_demo_output(out)
    assert [pid for pid in demo_pids(out) if running(pid)] == [], out
    assert "Serving for 3 s (--duration)." in out
    assert re.search(r"^gunicorn \(pid \d+\) stopped$", out, re.MULTILINE), out
    assert re.search(r"^redis-server \(pid \d+\) stopped$", out, re.MULTILINE), out


@pytest.mark.gunicorn
@pytest.mark.parametrize("how", ["ctrl-c", "sigterm", "ctrl-c-then-sigkill"])
def test_demo_stops_on_signal_and_leaves_no_process(how: str, tmp_path: Path) -> None:
    """Ctrl-C at a terminal signals the demo's whole process group; ``kill`` just the demo.

    The demo may be killed before it has stopped anything (a supervisor that
    answers Ctrl-C with SIGKILL): the servers must stop on the group's SIGINT
    alone. SIGKILL follows the SIGINT at once, so the demo never gets to stop
    them itself, however fast this machine is.
    """
    lines: queue.Queue[str | None] = queue.Queue()
    with (
        (tmp_path / "demo.err").open("w+") as err_file,
        subprocess.Popen(
            DEMO,
            cwd=ROOT,
            env=child_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err_file,
            text=True,
            start_new_session=True,  # its own process group, as a shell gives a job
        ) as demo,
    ):
        assert demo.stdout is not None
        stdout = demo.stdout

        def read() -> None:
            for line in stdout:
                lines.put(line)
            lines.put(None)

        reader = threading.Thread(target=read, name="demo-stdout")
        reader.start()
        out: list[str] = []
        pids: list[int] = []
        try:
            deadline = time.monotonic() + DEMO_TIMEOUT
            while not out or out[-1] != "Serving until Ctrl-C.\n":
                line = lines.get(timeout=max(deadline - time.monotonic(), 0.1))
                assert line is not None, "".join(out)
                out.append(line)
            pids = demo_pids("".join(out))
            if how == "sigterm":
                demo.send_signal(signal.SIGTERM)
            else:
                os.killpg(demo.pid, signal.SIGINT)
            if how == "ctrl-c-then-sigkill":
                demo.kill()
            demo.wait(timeout=STOP_TIMEOUT)
            # The servers hold the demo's stdout until they exit.
            reader.join(timeout=STOP_TIMEOUT)
            left = wait_until_stopped(pids)
        finally:
            stop_group(demo, STOP_TIMEOUT)
            if reader.is_alive() or any(running(pid) for pid in pids):
                for pid in pids:  # do not leave them to the next test
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            reader.join()
        while (line := lines.get_nowait()) is not None:
            out.append(line)
        err_file.seek(0)
        err = err_file.read()

    text = "".join(out)
    assert left == [], f"still running: {left}\n{text}\n{err}"
    assert "Traceback" not in err, err
    assert_demo_output(text)
    if how == "ctrl-c-then-sigkill":
        assert demo.returncode == -signal.SIGKILL
    else:
        assert demo.returncode == 0, f"{text}\n{err}"
        signame = "SIGTERM" if how == "sigterm" else "SIGINT"
        assert f"{signame}: stopping." in text
        assert re.search(r"^gunicorn \(pid \d+\) stopped$", text, re.MULTILINE), text
        assert re.search(r"^redis-server \(pid \d+\) stopped$", text, re.MULTILINE), text


def test_demo_without_redis_server_names_the_package(tmp_path: Path) -> None:
    result = subprocess.run(
        DEMO,
        cwd=ROOT,
        env=child_env(PATH=str(tmp_path)),  # nothing on PATH
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "redis-server was not found on PATH" in result.stderr
    assert "apt-get install redis-server" in result.stderr
