"""Benchmark 4 helper: hold N client connections open on a Redis server.

The connections are raw sockets, named like the connections of a fleet of
processes using this app (``connhealth:<host>:<pid>:<alias>``, ``--per-process``
connections each), so ``manage.py connhealth`` has the whole fleet to group.
Prints ``READY <n>`` once all are open and named, then holds them until its
stdin closes or it gets SIGTERM/SIGINT, and closes them all.

No dependency beyond the standard library.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import socket
import sys


def fleet_name(index: int, per_process: int, alias: str) -> str:
    process = index // per_process
    return f"connhealth:bench-host-{process // 20}:{100000 + process}:{alias}"


def command(*parts: str) -> bytes:
    out = [f"*{len(parts)}\r\n".encode()]
    for part in parts:
        data = part.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--per-process", type=int, default=10)
    parser.add_argument("--alias", default="default")
    args = parser.parse_args()

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    sockets: list[socket.socket] = []
    try:
        for index in range(args.count):
            sock = socket.create_connection((args.host, args.port), timeout=10)
            sockets.append(sock)
            name = fleet_name(index, args.per_process, args.alias)
            sock.sendall(command("CLIENT", "SETNAME", name))
        for sock in sockets:  # every reply, so the server has registered every name
            reply = sock.recv(64)
            if not reply.startswith(b"+OK"):
                print(f"unexpected reply to CLIENT SETNAME: {reply!r}", file=sys.stderr)
                return 1
        print(f"READY {len(sockets)}", flush=True)
        sys.stdin.read()  # until the runner closes our stdin
    finally:
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
