"""An SSH ProxyCommand that puts a network's latency between the controller and a device.

Usage (by ssh): ProxyCommand=python3 bench/latency_relay.py ONE_WAY_MS %h %p

Relays standard input to HOST:PORT and back, each chunk delivered ONE_WAY_MS after it was read,
in order, without holding the next chunk back (a link's delay, not a throttle): a command's round
trip over the SSH connection then costs 2 x ONE_WAY_MS, as over a WAN. This kernel has no netem,
so the delay is in the path instead (bench/fleet.py --rtt).
"""
from __future__ import annotations

import os
import queue
import socket
import sys
import threading
import time


def pump(read, write, close, delay: float) -> None:
    """Copy read() to write() until read() returns b"", each chunk ``delay`` seconds late."""
    chunks: queue.Queue = queue.Queue()

    def reader() -> None:
        while True:
            data = read()
            chunks.put((time.monotonic() + delay, data))
            if not data:
                return

    threading.Thread(target=reader, daemon=True).start()
    while True:
        due, data = chunks.get()
        late = due - time.monotonic()
        if late > 0:
            time.sleep(late)
        if not data:
            close()
            return
        write(data)


def write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


def main(argv: list[str]) -> int:
    delay, host, port = float(argv[0]) / 1000.0, argv[1], int(argv[2])
    sock = socket.create_connection((host, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    up = threading.Thread(target=pump, daemon=True, args=(
        lambda: os.read(0, 65536), sock.sendall, lambda: sock.shutdown(socket.SHUT_WR), delay))
    up.start()
    pump(lambda: sock.recv(65536), lambda data: write_all(1, data), lambda: os.close(1), delay)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
