"""Each HTTP worker's own listener on the shared port (api/listener.py)."""

from __future__ import annotations

import pickle
import selectors
import socket

from hajj_ledger.api.listener import SharedPort, listener


def test_the_shared_port_reaches_a_worker_as_a_listener_of_its_own_on_that_port() -> None:
    with SharedPort("127.0.0.1", 0) as reserved:
        port = reserved.getsockname()[1]
        with pickle.loads(pickle.dumps(reserved)) as own, pickle.loads(pickle.dumps(reserved)) as other:
            assert own.fileno() != other.fileno() != reserved.fileno()
            assert own.getsockname() == other.getsockname() == ("127.0.0.1", port)


def test_new_connections_are_spread_over_the_workers_listeners() -> None:
    with SharedPort("127.0.0.1", 0) as reserved:
        port = reserved.getsockname()[1]
        workers = [listener("127.0.0.1", port), listener("127.0.0.1", port)]
        for sock in workers:
            sock.listen(64)
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(40)]
        accepted = {sock: 0 for sock in workers}
        with selectors.DefaultSelector() as waiting:
            for sock in workers:
                sock.setblocking(False)
                waiting.register(sock, selectors.EVENT_READ)
            while sum(accepted.values()) < len(clients):
                for key, _ in waiting.select(timeout=5):
                    connection, _ = key.fileobj.accept()  # type: ignore[union-attr]
                    connection.close()
                    accepted[key.fileobj] += 1  # type: ignore[index]
        for sock in (*workers, *clients):
            sock.close()
    # The kernel hashes each connection to one listener: 40 all to one would be a 1 in 2**39 chance.
    assert all(accepted.values()), accepted
