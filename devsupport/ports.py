"""Free TCP ports on loopback, for the servers and brokers that tests, the benchmark and the
scripts start. Standard library only (``scripts/docker-install-check`` runs on any python3).
"""

from __future__ import annotations

import contextlib
import socket

LOOPBACK = "127.0.0.1"


def free_ports(count: int) -> list[int]:
    """``count`` distinct unused loopback ports (free when asked: bind them soon).

    Every socket stays bound until all ports are chosen, so the kernel cannot hand out the same
    port twice; asking for ports one at a time can, in principle.
    """
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((LOOPBACK, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def free_port() -> int:
    """One unused loopback port; for several at once, ``free_ports`` (see why there)."""
    return free_ports(1)[0]
