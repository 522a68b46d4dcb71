"""Waiting on a condition with a deadline, and running a service for a test.

Tests never sleep for a fixed time and hope: they wait until a condition holds, up to a
deadline, and fail with a message saying what never happened.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    condition: Callable[[], T | None],
    *,
    timeout_s: float,
    what: str,
    every_s: float = 0.05,
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Return the first truthy value of ``condition()``; fail after ``timeout_s`` saying ``what``.

    An exception of a type in ``ignore`` counts as "not yet" (the last one is named in the
    failure message); any other propagates at once.
    """
    deadline = time.monotonic() + timeout_s
    last: BaseException | None = None
    while True:
        try:
            value = condition()
            if value:
                return value
        except ignore as error:  # not met yet (e.g. connection refused)
            last = error
        if time.monotonic() >= deadline:
            detail = f" (last: {type(last).__name__}: {last})" if last else ""
            raise AssertionError(f"{what}: not within {timeout_s:.0f} s{detail}")
        time.sleep(every_s)


def listening_socket() -> socket.socket:
    """Return a socket bound to a free port on 127.0.0.1 and listening.

    The socket is handed to the server process (``uvicorn --fd``), so no other process can
    take the port between choosing and binding it.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def answers(address: str) -> bool:
    """Return whether ``address`` answers an HTTP GET with a 2xx status."""
    with urllib.request.urlopen(address, timeout=2) as response:
        return 200 <= response.status < 300


@contextmanager
def api_server(
    url: str, *, root: Path, env: dict[str, str] | None = None, timeout_s: float = 60
) -> Iterator[str]:
    """Run the API over database ``url`` in its own process on a free port; yield its address.

    ``{address}`` in a value of ``env`` is replaced by the server's address (for settings that
    name the server itself, such as the issuer of its tokens).

    Fails (with the server's own output) if the server exits or its ``/health`` does not answer
    within ``timeout_s``.
    """
    sock = listening_socket()
    port = sock.getsockname()[1]
    command: Sequence[str] = [
        sys.executable,
        "-m",
        "uvicorn",
        "api.app:create_app",
        "--factory",
        "--fd",
        str(sock.fileno()),
        "--log-level",
        "warning",
    ]
    address = f"http://127.0.0.1:{port}"
    named = {key: value.replace("{address}", address) for key, value in (env or {}).items()}
    environment = os.environ | named | {"TWIN_DATABASE_URL": url}
    # the server's output goes to a file, not a pipe: a chatty server never blocks on it
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            command, env=environment, cwd=root, pass_fds=(sock.fileno(),), stdout=log, stderr=log
        )
        sock.close()  # the server holds its own copy

        def up() -> bool:
            if process.poll() is not None:
                log.seek(0)
                output = log.read().decode(errors="replace")
                raise RuntimeError(f"the API exited with {process.returncode}:\n{output}")
            return answers(f"{address}/health")

        try:
            wait_until(
                up,
                timeout_s=timeout_s,
                what=f"the API at {address} answering /health",
                ignore=(OSError,),
            )
            yield address
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=20)


# what uvicorn logs once it listens (with the port it bound, also for --port 0)
LISTENING = re.compile(r"Uvicorn running on (http://127\.0\.0\.1:\d+)")


def group_members(pgid: int) -> list[int]:
    """Processes of a process group that are still running (zombies are done)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # the process ended while we looked
            continue
        state, _ppid, group = text.rsplit(")", 1)[1].split()[:3]
        if int(group) == pgid and state != "Z":
            members.append(int(stat.parent.name))
    return members


def refuses(address: str) -> bool:
    """Return whether ``address`` refuses connections (nothing listens there)."""
    try:
        urllib.request.urlopen(f"{address}/health", timeout=2).close()
    except urllib.error.URLError as error:
        return isinstance(error.reason, ConnectionRefusedError)
    return False


@contextmanager
def served(
    command: Sequence[str],
    *,
    env: dict[str, str],
    log: Path,
    timeout_s: float,
    cwd: Path | None = None,
) -> Iterator[str]:
    """Run a command that starts the API in a process group of its own; yield the address the
    server logs. Afterwards the group is terminated and must be gone, and the port closed.

    The output goes to a file read by path (never a pipe a chatty server could fill up).
    """
    with log.open("ab") as sink:
        process = subprocess.Popen(
            command,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # make and its children: one group to stop
        )

    def listening() -> str | None:
        found = LISTENING.search(log.read_text(errors="replace"))
        if found:
            return found.group(1)
        if process.poll() is not None:
            raise AssertionError(
                f"{' '.join(command)} exited with {process.returncode} before serving:\n"
                f"{log.read_text(errors='replace')}"
            )
        return None

    address = None
    try:
        address = wait_until(
            listening, timeout_s=timeout_s, what=f"{' '.join(command)} logging its address"
        )
        yield address
    finally:
        with suppress(ProcessLookupError):  # every process of the group has ended already
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
    wait_until(
        lambda: not group_members(process.pid),
        timeout_s=30,
        what=f"every process of {' '.join(command)} ending after SIGTERM",
    )
    if address is not None:
        assert refuses(address), f"{address} still answers after the server stopped"
