"""A listening socket of its own for each HTTP worker, all on one port (SO_REUSEPORT).

uvicorn's workers share one listener, and whichever worker wakes first accepts every connection waiting: the few
long-lived connections that a load balancer or a batch client keeps open often all land on one worker while the
other idles (measured: 4 batch clients on one of 2 workers in half the runs). With a listener each, the kernel spreads
new connections over the workers."""

from __future__ import annotations

import socket
from typing import Any


class SharedPort(socket.socket):
    """The port `serve` listens on, handed to uvicorn's supervisor: it reaches each worker (pickled, as uvicorn sends
    its sockets to its workers) as a listener of that worker's own. Bound here, so that a port in use fails at once."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(family(host), socket.SOCK_STREAM)
        _share(self)
        self.bind((host, port))  # never listens: connections go to the workers' listeners only
        self.address = (host, self.getsockname()[1])  # port 0 chooses one port, for every worker

    def __reduce__(self) -> tuple[Any, ...]:
        return listener, self.address


def listener(host: str, port: int) -> socket.socket:
    """A worker's own socket on the shared port; the server makes it listen."""
    sock = socket.socket(family(host), socket.SOCK_STREAM)
    _share(sock)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _share(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
