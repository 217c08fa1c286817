"""testproject.supervisor with real processes: small Python children that misbehave on purpose."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from testproject.supervisor import (
    Child,
    Children,
    NotReady,
    accepts,
    free_port,
    processes,
    read_line,
    reap,
    running,
    start,
    tail,
)

#: Seconds a test waits for something that should take a fraction of one.
SLOW = 30.0

IGNORE_TERM = "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
READY = "print('ready', flush=True)\n"
SLEEP = "import time; time.sleep(60)\n"


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def wait_gone(pid: int) -> bool:
    deadline = time.monotonic() + SLOW
    while running(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    return not running(pid)


def test_start_logs_output_and_stop_terminates(tmp_path: Path) -> None:
    log = tmp_path / "child.log"
    child = start(
        python(f"import sys; print('to stderr', file=sys.stderr)\n{READY}{SLEEP}"), log=log
    )
    try:
        assert child.name == Path(sys.executable).name
        assert child.own_group
        assert os.getpgid(child.pid) == child.pid
        child.wait_until(lambda: "ready" in log.read_text(), SLOW, "saying ready")
        assert not child.exited()
    finally:
        killed = child.stop(SLOW)
    assert killed is False
    assert child.returncode == -signal.SIGTERM
    assert child.exited()
    assert log.read_text().splitlines() == ["to stderr", "ready"]
    assert child.stop() is False  # idempotent
    assert re.fullmatch(rf"<Child \S+ pid {child.pid} status -15>", repr(child))


def test_log_is_truncated_or_appended_to(tmp_path: Path) -> None:
    log = tmp_path / "child.log"
    for append in (False, True):
        child = start(python("print('line')"), log=log, append=append)
        child.proc.wait(timeout=SLOW)
        child.stop()
    assert log.read_text() == "line\nline\n"
    child = start(python("print('line')"), log=log)
    child.proc.wait(timeout=SLOW)
    child.stop()
    assert log.read_text() == "line\n"


def test_child_ignoring_sigterm_is_killed_after_the_timeout() -> None:
    child = start(python(f"{IGNORE_TERM}{READY}{SLEEP}"), stdout=subprocess.PIPE)
    assert child.proc.stdout is not None
    try:
        assert child.wait_line(SLOW) == b"ready\n"  # SIGTERM is ignored from here on
        started = time.monotonic()
        killed = child.stop(0.5)
        elapsed = time.monotonic() - started
    finally:
        child.kill()
        child.proc.stdout.close()
    assert killed is True
    assert child.returncode == -signal.SIGKILL
    assert 0.5 <= elapsed < SLOW


def test_child_dying_before_ready_names_its_status_and_log_tail(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    extra = tmp_path / "server-own.log"
    extra.write_text("its own log file\n")
    code = "import sys\nfor n in range(50): print(f'line {n}')\nsys.stdout.flush()\n"
    code += "sys.exit('bad option --frob')"
    child = start(python(code), name="server", log=log, also_logs=[extra])
    with pytest.raises(NotReady) as error:
        child.wait_until(lambda: False, SLOW, "answering")
    message = str(error.value)
    assert message.startswith(f"server (pid {child.pid}) exited with status 1, before answering.")
    assert "--- server.log ---" in message
    assert "bad option --frob" in message
    assert "line 49" in message
    assert "line 19" not in message  # the tail only: 30 lines
    assert "--- server-own.log ---\nits own log file" in message
    assert child.returncode == 1
    child.stop()


def test_child_not_ready_in_time_says_so_and_still_stops(tmp_path: Path) -> None:
    child = start(python(SLEEP), name="sleeper", log=tmp_path / "sleeper.log")
    try:
        with pytest.raises(NotReady, match=r"is still running, not ready within 0\.2 s\."):
            child.wait_until(lambda: False, 0.2)
    finally:
        child.stop(SLOW)
    assert child.returncode == -signal.SIGTERM


def test_wait_port_waits_until_the_port_accepts() -> None:
    port = free_port()
    assert not accepts(port)
    code = (
        "import socket, time\ntime.sleep(0.3)\n"
        f"s = socket.create_server(('127.0.0.1', {port}))\n{SLEEP}"
    )
    with start(python(code), name="listener") as child:
        child.wait_port(port, SLOW)
        assert accepts(port)
    assert child.returncode == -signal.SIGTERM
    assert not accepts(port)


def test_wait_line_fails_when_the_output_ends_first() -> None:
    child = start(python("print('no newline', end='')"), name="quiet", stdout=subprocess.PIPE)
    assert child.proc.stdout is not None
    with pytest.raises(NotReady) as error:
        child.wait_line(SLOW)
    child.proc.stdout.close()
    child.stop()
    # The pipe may close a moment before the process has exited.
    assert re.fullmatch(
        rf"quiet \(pid {child.pid}\) (exited with status 0|is still running), end of output "
        r"before a whole line \(read so far: b'no newline'\)\.",
        str(error.value),
    )


def test_stop_reaches_the_grandchildren_of_a_group() -> None:
    """The group's SIGTERM stops a grandchild; one that ignores it is SIGKILLed with the group."""
    grandchild = f"{IGNORE_TERM}import os; print(os.getpid(), flush=True)\n{SLEEP}"
    code = (
        "import subprocess, sys\n"
        f"subprocess.Popen([sys.executable, '-c', {grandchild!r}])\n"
        f"subprocess.Popen([sys.executable, '-c', {grandchild.replace(IGNORE_TERM, '')!r}])\n"
        f"{SLEEP}"
    )
    child = start(python(code), stdout=subprocess.PIPE)
    assert child.proc.stdout is not None
    try:
        lines = b""
        while lines.count(b"\n") < 2:  # each grandchild says its pid once it is set up
            lines += child.wait_line(SLOW)
        pids = [int(pid) for pid in lines.split()]
        assert all(os.getpgid(pid) == child.pid for pid in pids)
        assert sorted(processes(parent=child.pid)) == sorted(pids)
        assert sorted(processes(session=child.pid)) == sorted([child.pid, *pids])
    finally:
        child.stop(SLOW)
        child.proc.stdout.close()
    assert child.returncode == -signal.SIGTERM
    assert [pid for pid in pids if not wait_gone(pid)] == []


def test_outside_a_group_of_its_own_only_the_child_is_signalled() -> None:
    child = start(python(f"{READY}{SLEEP}"), stdout=subprocess.PIPE, own_group=False)
    assert child.proc.stdout is not None
    try:
        assert os.getpgid(child.pid) == os.getpgrp()
        child.wait_line(SLOW)
    finally:
        assert child.stop(SLOW) is False
        child.proc.stdout.close()
    assert child.returncode == -signal.SIGTERM


def test_stop_without_a_signal_waits_for_the_child_to_exit_on_its_own() -> None:
    child = start(python("import sys; sys.stdin.read()"), stdin=subprocess.PIPE)
    assert child.proc.stdin is not None
    child.proc.stdin.close()  # the way to ask this child to stop
    assert child.stop(SLOW, signum=None) is False
    assert child.returncode == 0


def test_kill_a_paused_child() -> None:
    child = start(python(SLEEP))
    child.send(signal.SIGSTOP)
    child.kill()
    assert child.returncode == -signal.SIGKILL
    child.kill()  # idempotent


def test_stop_of_a_paused_child_continues_it_so_it_can_exit() -> None:
    child = start(python(SLEEP))
    child.send(signal.SIGSTOP)
    assert child.stop(SLOW) is False
    assert child.returncode == -signal.SIGTERM


def test_children_stop_newest_first_and_report_each() -> None:
    children = Children()
    first = children.start(python(SLEEP), name="first")
    second = children.start(python(f"{IGNORE_TERM}{SLEEP}"), name="second")
    third = children.start(python(SLEEP), name="third")
    children.stop(third)
    assert third.returncode == -signal.SIGTERM
    reports: list[tuple[Child, bool]] = []
    # A short timeout: "second" ignores SIGTERM (once its interpreter is up).
    children.stop_all(0.5, report=lambda child, killed: reports.append((child, killed)))
    assert [child.name for child, _ in reports] == ["second", "first"]
    assert (first.returncode, reports[1][1]) == (-signal.SIGTERM, False)
    assert second.returncode in (-signal.SIGTERM, -signal.SIGKILL)
    children.stop_all()  # nothing left


def test_tail_of_missing_and_empty_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.log"
    empty.write_text("\n")
    assert tail(tmp_path / "missing.log", empty) == "(no output)"
    full = tmp_path / "full.log"
    full.write_text("".join(f"{n}\n" for n in range(5)))
    assert tail(full, lines=2) == "--- full.log ---\n3\n4"


def test_free_port_is_free() -> None:
    port = free_port()
    with socket.create_server(("127.0.0.1", port)):
        assert accepts(port)


def test_read_line_and_reap_of_a_process_without_popen() -> None:
    read_fd, write_fd = os.pipe()
    try:
        code = "import os, sys; os.write(int(sys.argv[1]), b'one\\n'); sys.exit(3)"
        os.set_inheritable(write_fd, True)
        pid = os.posix_spawn(
            sys.executable, [sys.executable, "-c", code, str(write_fd)], os.environ
        )
        os.close(write_fd)
        write_fd = -1
        assert read_line(read_fd, SLOW) == b"one\n"
        assert reap(pid, SLOW) == 3
        with pytest.raises(NotReady, match="end of output"):
            read_line(read_fd, SLOW)
    finally:
        os.close(read_fd)
        if write_fd != -1:
            os.close(write_fd)


def test_read_line_times_out_and_reap_kills_after_its_timeout() -> None:
    read_fd, write_fd = os.pipe()
    try:
        pid = os.posix_spawn(sys.executable, python(SLEEP), os.environ)
        with pytest.raises(NotReady, match=r"no line within 0\.1 s"):
            read_line(read_fd, 0.1)
        assert reap(pid, 0.2) == -signal.SIGKILL
    finally:
        os.close(read_fd)
        os.close(write_fd)
