"""Serving the API with uvicorn, on one worker process or several sharing one socket.

With several workers uvicorn binds the socket in the supervising process and hands it to each
worker. The socket it makes (``socket.socket(family)``) has protocol number 0, and asyncio only
turns Nagle's algorithm off (``TCP_NODELAY``) on connections of a socket whose protocol is
``IPPROTO_TCP`` (``asyncio.base_events._set_nodelay``): every kept-alive response written in
two sends (headers, then body) then waited for the client's delayed ACK, about 40 ms a
request (measured: 22 tiles/s on one connection instead of 700). The socket is made again
over the same descriptor with its real protocol, so the workers' connections set
``TCP_NODELAY`` as a single worker's do.
"""

from __future__ import annotations

import socket

import uvicorn
from uvicorn.supervisors import Multiprocess

#: The ASGI application factory the workers import.
APP = "api.app:create_app"
#: Seconds a worker may take to answer the supervisor's health ping (uvicorn's default is 5).
WORKER_HEALTHCHECK_S = 60


def tcp_socket(sock: socket.socket) -> socket.socket:
    """Return a listening socket as one of protocol ``IPPROTO_TCP`` (same descriptor).

    Parameters
    ----------
    sock
        An ``AF_INET``/``AF_INET6`` stream socket (it is detached: use the one returned).

    Returns
    -------
    socket.socket
        The same socket, with ``proto`` set so asyncio sets ``TCP_NODELAY`` on its connections.
    """
    family, kind = sock.family, sock.type
    tcp = socket.socket(family, kind, socket.IPPROTO_TCP, fileno=sock.detach())
    tcp.set_inheritable(True)
    return tcp


def serve(*, host: str = "127.0.0.1", port: int = 8000, workers: int = 1) -> None:
    """Serve the API until interrupted (SIGINT/SIGTERM).

    Parameters
    ----------
    host
        Address to listen on.
    port
        Port to listen on (0: any free one; the log line ``Uvicorn running on ...`` names it).
    workers
        Worker processes; each builds its own app (``api.app:create_app``) and shares the
        socket, the Redis tile cache (``TWIN_REDIS_URL``) and the store.

    Raises
    ------
    ValueError
        For fewer than one worker.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")
    if workers == 1:
        uvicorn.run(APP, factory=True, host=host, port=port)
        return
    # a worker imports the whole API before it answers the supervisor's health ping; on a busy
    # 2-core machine that took up to 5 s, uvicorn's default timeout, and workers were killed and
    # respawned at start-up: a minute lets a slow start finish and still finds a hung worker
    config = uvicorn.Config(
        APP,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_S,
    )
    sock = config.bind_socket()  # binds and logs the address (the port it got, for port 0)
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock = tcp_socket(sock)
    Multiprocess(config, sockets=[sock]).run()
