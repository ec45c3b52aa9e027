"""What the 2-process gloo tests share: a free loopback port for the process group."""

import socket


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the group's MASTER_PORT)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
