"""The demo project (testproject/) run the way users run it: real gunicorn, real redis-server.

Each test starts its servers as child processes and stops and reaps them, pass or
fail. Timeouts are generous: a loaded two-core machine boots gunicorn slowly.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import pty
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from subprocess import PIPE
from typing import TYPE_CHECKING

import pytest

from django_connhealth.conf import client_host
from testproject.sockets import sockets_of, tcp_connections
from testproject.supervisor import processes, running, start
from testproject.traffic import fan_out
from tests.helpers import STOP_TIMEOUT, gunicorn, pools_of_every_worker
from tests.servers import ROOT, child_env

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tests.conftest import RedisDB

#: Seconds the demo may take from start to exit with --duration 3.
DEMO_TIMEOUT = 60.0


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


@pytest.mark.parametrize("sentinels", ["127.0.0.1", "127.0.0.1:port", ":26379"])
def test_malformed_redis_sentinels_say_what_to_set(sentinels: str, tmp_path: Path) -> None:
    load = "from django.conf import settings; settings.CACHES"
    env = child_env(
        DJANGO_SETTINGS_MODULE="testproject.settings",
        TESTPROJECT_VAR_DIR=str(tmp_path),
        REDIS_URL="redis://mymaster/0",
        REDIS_SENTINELS=sentinels,
    )
    result = subprocess.run(
        [sys.executable, "-c", load],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert (
        f"ImproperlyConfigured: REDIS_SENTINELS={sentinels!r} is not valid: set it to the "
        f"sentinels' host:port, comma-separated"
    ) in result.stderr


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
        # the client ends of the server's processes (another test's leftovers on this
        # shared server are not theirs)
        held = set().union(*(sockets_of(pid) for pid in [master.pid, *workers]))
        theirs = {end.local_port for end in tcp_connections() if end.socket in held}

    assert len(workers) == 2
    assert master.pid not in workers
    assert sorted(answers) == sorted(workers)
    for pid, answer in answers.items():
        assert answer["concurrency"] == {
            "workers": 2,
            "threads": 4,
            "worker_class": "gthread",
            "role": "web",
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
    ours = [
        client
        for client in clients
        if client["db"] == str(redis_db.db) and int(client["addr"].rsplit(":", 1)[1]) in theirs
    ]
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
    # A group of its own, for stop() to kill if need be.
    child = start([*DEMO, "--duration", "3"], cwd=ROOT, env=env, stdout=PIPE, stderr=PIPE)
    with child.proc as demo:
        try:
            out, err = (text.decode() for text in demo.communicate(timeout=DEMO_TIMEOUT))
        except subprocess.TimeoutExpired:
            child.stop(STOP_TIMEOUT)  # the demo stops its servers on SIGTERM
            pytest.fail(f"the demo ran past {DEMO_TIMEOUT:g} s:\n{demo.communicate()}")

    assert demo.returncode == 0, f"{out}\n{err}"
    assert "Traceback" not in err, err
    assert_demo_output(out)
    assert [pid for pid in demo_pids(out) if running(pid)] == [], out
    assert "Serving for 3 s (--duration)." in out
    assert re.search(r"^gunicorn \(pid \d+\) stopped$", out, re.MULTILINE), out
    assert re.search(r"^redis-server \(pid \d+\) stopped$", out, re.MULTILINE), out


ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class Lines:
    """What a child writes to ``fd`` (a pipe, or a terminal's main side), line by line.

    A thread reads it, so that the child never blocks on a full pipe.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._queue: queue.Queue[str | None] = queue.Queue()
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, name="child-output")
        self._thread.start()

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def _read(self) -> None:
        pending = b""
        while True:
            try:
                chunk = os.read(self._fd, 65536)
            except OSError:  # EIO: every process holding the terminal has closed it
                chunk = b""
            if not chunk:
                break
            *complete, pending = (pending + chunk).split(b"\n")
            for line in complete:
                self._queue.put(self._plain(line) + "\n")
        if pending:
            self._queue.put(self._plain(pending))
        self._queue.put(None)

    @staticmethod
    def _plain(line: bytes) -> str:
        """Without a terminal's \\r and colours (tox colours the lines of stderr)."""
        return ANSI_ESCAPE.sub("", line.rstrip(b"\r").decode(errors="replace"))

    def until(self, line: str, timeout: float) -> str:
        """The output up to and with ``line``; fails if it ends or ``timeout`` passes first."""
        deadline = time.monotonic() + timeout
        while not self.lines or self.lines[-1] != f"{line}\n":
            try:
                got = self._queue.get(timeout=max(deadline - time.monotonic(), 0.1))
            except queue.Empty:
                pytest.fail(f"no {line!r} within {timeout:g} s:\n{self.text}")
            if got is None:
                self._queue.put(None)  # for join()
                pytest.fail(f"the output ended before {line!r}:\n{self.text}")
            self.lines.append(got)
        return self.text

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the end of the output; whether it came. Then ``text`` has it all."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            return False
        while (line := self._queue.get_nowait()) is not None:
            self.lines.append(line)
        self._queue.put(None)  # for the next join()
        return True


def kill_leftovers(pids: Sequence[int]) -> None:
    """SIGKILL those of ``pids`` still running: do not leave them to the next test."""
    for pid in pids:
        if running(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.gunicorn
@pytest.mark.parametrize("how", ["ctrl-c", "sigterm", "ctrl-c-then-sigkill"])
def test_demo_stops_on_signal_and_leaves_no_process(how: str, tmp_path: Path) -> None:
    """Ctrl-C at a terminal signals the demo's whole process group; ``kill`` just the demo.

    The demo may be killed before it has stopped anything (a supervisor that
    answers Ctrl-C with SIGKILL): the servers must stop on the group's SIGINT
    alone. SIGKILL follows the SIGINT at once, so the demo never gets to stop
    them itself, however fast this machine is.
    """
    with (tmp_path / "demo.err").open("w+") as err_file:
        # Its own process group, as a shell gives a job.
        child = start(DEMO, cwd=ROOT, env=child_env(), stdout=PIPE, stderr=err_file)
        with child.proc as demo:
            assert demo.stdout is not None
            output = Lines(demo.stdout.fileno())
            pids: list[int] = []
            try:
                pids = demo_pids(output.until("Serving until Ctrl-C.", DEMO_TIMEOUT))
                if how == "sigterm":
                    demo.send_signal(signal.SIGTERM)
                else:
                    os.killpg(demo.pid, signal.SIGINT)
                if how == "ctrl-c-then-sigkill":
                    demo.kill()
                demo.wait(timeout=STOP_TIMEOUT)
                # The servers hold the demo's stdout until they exit.
                output.join(timeout=STOP_TIMEOUT)
                left = wait_until_stopped(pids)
            finally:
                child.stop(STOP_TIMEOUT)
                kill_leftovers(pids)
                output.join()
        err_file.seek(0)
        err = err_file.read()

    text = output.text
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


#: Seconds for `make demo` to serve: tox may have to build the demo's environment first.
MAKE_DEMO_TIMEOUT = 300.0
#: The checkout itself, where the Makefile and the .venv it builds live (ROOT may be
#: a directory of links to tests/ and testproject/ only).
CHECKOUT = Path(__file__).resolve().parent.parent
#: Makes the terminal on fd 0 the controlling terminal of a new session, then runs argv.
WITH_TERMINAL = (
    "import fcntl, os, sys, termios\n"
    "fcntl.ioctl(0, termios.TIOCSCTTY, 0)\n"
    "os.execvp(sys.argv[1], sys.argv[1:])\n"
)


@pytest.mark.gunicorn
@pytest.mark.skipif(
    shutil.which("make") is None or not (CHECKOUT / ".venv" / "bin" / "tox").exists(),
    reason="needs make, and the .venv with tox that `make` builds",
)
def test_make_demo_stopped_with_ctrl_c_exits_0() -> None:
    """The README's `make demo` at a terminal, then Ctrl-C: every process exits, make with 0.

    make runs in a session of its own whose controlling terminal is a new pty,
    the foreground job there as a shell leaves it; Ctrl-C is the byte a
    keyboard sends, and the terminal turns it into SIGINT for its foreground job.
    """
    # Not the variables of the tox environment these tests run in.
    inner = ("TOX_", "VIRTUAL_ENV", "PYTHONDEVMODE", "_PYTHON_")
    env = {key: value for key, value in child_env().items() if not key.startswith(inner)}
    main_fd, terminal = pty.openpty()
    try:
        make = [sys.executable, "-c", WITH_TERMINAL, "make", "demo"]
        child = start(make, cwd=CHECKOUT, env=env, stdin=terminal, stdout=terminal, stderr=terminal)
    finally:
        os.close(terminal)
    output = Lines(main_fd)
    pids: list[int] = []
    try:
        pids = demo_pids(output.until("Serving until Ctrl-C.", MAKE_DEMO_TIMEOUT))
        os.write(main_fd, b"\x03")  # Ctrl-C
        code = child.proc.wait(timeout=STOP_TIMEOUT * 2)
        output.join(timeout=STOP_TIMEOUT)
        left = wait_until_stopped([*pids, *processes(session=child.pid)])
    finally:
        child.stop(STOP_TIMEOUT)
        kill_leftovers([*pids, *processes(session=child.pid)])
        output.join()
        os.close(main_fd)

    text = output.text
    assert code == 0, text
    assert left == [], f"still running: {left}\n{text}"
    assert "SIGINT: stopping." in text
    assert re.search(r"^gunicorn \(pid \d+\) stopped", text, re.MULTILINE), text
    assert re.search(r"^redis-server \(pid \d+\) stopped", text, re.MULTILINE), text
    assert "evaluation failed" not in text, text
    assert "congratulations" in text, text
    assert "Interrupt" not in text, text  # make's "*** [Makefile:...: demo] Interrupt"
    assert "Traceback" not in text, text


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
