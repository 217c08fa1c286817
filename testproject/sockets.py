"""Which process holds which TCP connection (Linux /proc), for the benchmarks and the fault tests.

``tcp_connections()`` reads the kernel's TCP tables (both ends of a loopback
connection are in them), ``sockets_of(pid)`` the sockets a process holds.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import NamedTuple

__all__ = ["ESTABLISHED", "TcpConnection", "sockets_of", "tcp_connections"]

#: The state of an established connection in /proc/net/tcp.
ESTABLISHED = "01"


class TcpConnection(NamedTuple):
    """One line of /proc/net/tcp: one end of a connection."""

    local_port: int
    remote_port: int
    state: str
    #: bytes received that the process holding this end has not read yet
    unread: int
    #: ``socket:[inode]``, as a process's file descriptor links to it
    socket: str


def tcp_connections() -> list[TcpConnection]:
    """Every TCP socket of this network namespace, IPv4 and IPv6."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                queues = fields[4].split(":")
                found.append(
                    TcpConnection(
                        local_port=int(fields[1].rsplit(":", 1)[1], 16),
                        remote_port=int(fields[2].rsplit(":", 1)[1], 16),
                        state=fields[3],
                        unread=int(queues[1], 16),
                        socket=f"socket:[{fields[9]}]",
                    )
                )
    return found


def sockets_of(pid: int) -> set[str]:
    """The sockets process ``pid`` holds (``socket:[inode]``); none once it has exited."""
    held = set()
    with contextlib.suppress(OSError):  # a process that just exited
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                held.add(os.readlink(fd))
    return held
