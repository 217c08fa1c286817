"""Packet loss for the fault suite: a network namespace of the tests' own, with nftables.

``LossyNetwork`` makes a namespace joined to this one by a veth pair (names
and a /30 of 10.213.0.0/16 unique to this process), ``redis()`` starts a
redis-server inside it (``ip netns exec``), and ``drop(percent, port)`` has
nftables in the namespace drop that share of the packets to and from the port
(``numgen random mod 100 < percent drop``); ``heal()`` removes the rules (and
says how many packets they dropped).
``stop()`` deletes the namespace and the pair, pass or fail; ``start()`` also
deletes those of test processes that died without. It needs root, ``ip`` and
``nft`` with nf_tables: ``Unavailable`` says which is missing.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import subprocess
from typing import TYPE_CHECKING

from testproject.supervisor import running
from tests.redis_server import RedisServer

if TYPE_CHECKING:
    import pathlib
    from types import TracebackType

    from typing_extensions import Self

#: Names of this module's namespaces: the pid of the process that made them, a number.
PREFIX = "chf"
_NAME = re.compile(rf"^{PREFIX}(\d+)x(\d+)$")
_NUMBERS = itertools.count()
TABLE = "connhealth_faults"
#: Seconds one ``ip`` or ``nft`` command may take.
COMMAND_TIMEOUT = 10.0


class Unavailable(RuntimeError):
    """What this machine lacks for a network namespace with nftables."""


def missing() -> str | None:
    """Why a namespace with nftables cannot be made here, or None when it can."""
    if os.geteuid() != 0:
        return "network namespaces and nftables need root (the tests run as a user)"
    for tool, package in (("ip", "iproute2"), ("nft", "nftables")):
        if shutil.which(tool) is None:
            return f"no `{tool}` on PATH (install the Debian package {package})"
    return None


def _run(*cmd: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, input=stdin, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False
    )


def _must(*cmd: str, stdin: str | None = None) -> None:
    done = _run(*cmd, stdin=stdin)
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()}")


class LossyNetwork:
    """A network namespace of this process's own, reached through a veth pair."""

    def __init__(self) -> None:
        pid, number = os.getpid(), next(_NUMBERS)
        self.name = f"{PREFIX}{pid}x{number}"
        self.outer = f"{self.name}o"  # at most 15 characters: pids have at most 7 digits
        self.inner = f"{self.name}i"
        block = (pid * 8 + number) % 16384  # a /30 of 10.213.0.0/16
        base = f"10.213.{block // 64}."
        self.outer_address = f"{base}{block % 64 * 4 + 1}"
        self.address = f"{base}{block % 64 * 4 + 2}"
        self._made = False

    def __repr__(self) -> str:
        return f"<LossyNetwork {self.name} {self.address}>"

    def exec_prefix(self) -> list[str]:
        """Run the command that follows inside the namespace."""
        return ["ip", "netns", "exec", self.name]

    def start(self) -> Self:
        reason = missing()
        if reason is not None:
            raise Unavailable(reason)
        remove_orphans()
        made = _run("ip", "netns", "add", self.name)
        if made.returncode:
            raise Unavailable(f"`ip netns add` failed: {made.stderr.strip()}")
        self._made = True
        try:
            inside = self.exec_prefix()
            _must("ip", "link", "add", self.outer, "type", "veth", "peer", "name", self.inner)
            _must("ip", "link", "set", self.inner, "netns", self.name)
            _must("ip", "addr", "add", f"{self.outer_address}/30", "dev", self.outer)
            _must("ip", "link", "set", self.outer, "up")
            _must(*inside, "ip", "addr", "add", f"{self.address}/30", "dev", self.inner)
            _must(*inside, "ip", "link", "set", self.inner, "up")
            _must(*inside, "ip", "link", "set", "lo", "up")
            table = _run(*inside, "nft", "add", "table", "inet", TABLE)
            if table.returncode:
                raise Unavailable(f"nftables (nf_tables) is not usable: {table.stderr.strip()}")
        except BaseException:
            self.stop()
            raise
        return self

    def drop(self, percent: int, port: int) -> None:
        """Drop ``percent`` % of the packets to and from ``port`` in the namespace, at random."""
        rule = f"numgen random mod 100 < {percent} counter drop"
        _must(
            *self.exec_prefix(), "nft", "-f", "-",
            stdin=(
                f"table inet {TABLE} {{\n"
                f"  chain input {{ type filter hook input priority 0; policy accept;\n"
                f"    tcp dport {port} {rule}; }}\n"
                f"  chain output {{ type filter hook output priority 0; policy accept;\n"
                f"    tcp sport {port} {rule}; }}\n"
                f"}}\n"
            ),
        )  # fmt: skip

    def heal(self) -> int:
        """Drop nothing any more; how many packets were dropped since ``drop()``."""
        listed = _run(*self.exec_prefix(), "nft", "list", "table", "inet", TABLE)
        _must(*self.exec_prefix(), "nft", "flush", "table", "inet", TABLE)
        return sum(int(packets) for packets in re.findall(r"counter packets (\d+)", listed.stdout))

    def redis(self, workdir: pathlib.Path) -> NamespacedRedis:
        """A redis-server (not started yet) that runs in this namespace."""
        return NamespacedRedis(workdir, self)

    def stop(self) -> None:
        """Delete the namespace (the veth pair goes with it). Idempotent."""
        if self._made:
            _run("ip", "link", "del", self.outer)
            _run("ip", "netns", "del", self.name)
            self._made = False

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def remove_orphans() -> None:
    """Delete the namespaces of this module whose process has died (killed before its clean-up)."""
    listed = _run("ip", "netns", "list")
    for line in listed.stdout.splitlines():
        match = _NAME.match(line.split()[0]) if line.strip() else None
        if match and not running(int(match.group(1))):
            with contextlib.suppress(subprocess.TimeoutExpired):
                _run("ip", "link", "del", f"{match.group(0)}o")
                _run("ip", "netns", "del", match.group(0))


class NamespacedRedis(RedisServer):
    """A ``RedisServer`` run inside a ``LossyNetwork`` and listening on its address there."""

    def __init__(self, workdir: pathlib.Path, network: LossyNetwork) -> None:
        super().__init__(workdir)
        self.network = network
        self.host = network.address

    def _command(self, port: int) -> list[str]:
        # `ip netns exec` execs the command itself: the child's pid is the server's.
        # Protected mode would refuse every client not on the namespace's loopback;
        # the namespace is reached from this machine only.
        cmd = [*self.network.exec_prefix(), *super()._command(port)]
        return [*cmd, "--protected-mode", "no"]
