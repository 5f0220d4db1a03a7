"""The one harness for development processes: free ports, start, wait until ready, stop.

The services manager, the partner-API simulator, the Dagster stack, the gateway and the
webhook receiver all run as real subprocesses on 127.0.0.1. Each is started the same way:
in a session (process group) of its own, with SIGINT and SIGTERM at their defaults, output
appended to a log file; then polled until it answers (never a fixed sleep), failing at once
if it exits and naming it with the tail of its log; and stopped with SIGTERM to the leader,
then SIGKILL to the whole group for whatever is left (a code server, run workers).

Stdlib only: the services manager imports it before the project's dependencies exist.
"""

import os
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

HOST = "127.0.0.1"
_Server = TypeVar("_Server", bound=socketserver.BaseServer)

# A child started from a non-interactive shell inherits SIGINT "ignored", and Dagster's CLIs
# then ignore SIGTERM too; exec'ing through this resets both, so the process can be stopped.
_EXEC_WITH_DEFAULT_SIGNALS = (
    "import os, signal, sys; "
    "signal.signal(signal.SIGINT, signal.SIG_DFL); signal.signal(signal.SIGTERM, signal.SIG_DFL); "
    "os.execvp(sys.argv[1], sys.argv[1:])"
)
# urllib follows *_proxy variables; a local readiness probe must never go through a proxy.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class StartError(RuntimeError):
    """A process did not come up; the message names it and shows the tail of its log."""


def free_port(*, span: int = 1, host: str = HOST) -> int:
    """A local TCP port nothing listens on (bound, read, released).

    With ``span``, the ``span - 1`` ports above it are free too (a Kafka broker listens on
    ``p`` and its controller on ``p + 1``).
    """
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind((host, 0))
            port = sock.getsockname()[1]
        if port + span - 1 <= 65535 and not any(
            port_open(p, host) for p in range(port, port + span)
        ):
            return port
    raise RuntimeError(f"no {span} consecutive free ports on {host}")


def port_open(port: int, host: str = HOST) -> bool:
    """Whether something accepts TCP connections on host:port."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def http_ok(url: str, timeout: float = 1.0) -> bool:
    """Whether ``GET url`` answers 200 (a readiness probe: any failure is just "not yet")."""
    try:
        with _DIRECT.open(url, timeout=timeout) as response:
            return response.status == 200
    except OSError:
        return False


def tail(path: Path, lines: int = 30) -> str:
    """The last lines of a log file, for error messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


def temporary_log(name: str) -> Path:
    """A new, empty log file in the temporary directory; the caller removes it."""
    with tempfile.NamedTemporaryFile(prefix=f"{name}_", suffix=".log", delete=False) as f:
        return Path(f.name)


def wait_until(
    name: str,
    ready: Callable[[], bool],
    *,
    timeout: float,
    log: Path,
    exited: Callable[[], bool] = lambda: False,
    interval: float = 0.2,
) -> None:
    """Poll ``ready`` until it holds; StartError naming ``name`` and its log otherwise.

    A process that ``exited`` while we wait fails at once instead of after the timeout.
    """
    deadline = time.monotonic() + timeout
    while not ready():
        if exited():
            raise StartError(f"{name} exited during start-up; last lines of {log}:\n{tail(log)}")
        if time.monotonic() > deadline:
            raise StartError(
                f"{name} did not become ready within {timeout:.0f}s; last lines of {log}:\n"
                f"{tail(log)}"
            )
        time.sleep(interval)


def process_exists(pid: int) -> bool:
    """Whether process ``pid`` exists (for processes another invocation started)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def stop_pid(pid: int, timeout: float = 30.0) -> None:
    """SIGTERM process ``pid``, wait up to ``timeout``, then SIGKILL its process group.

    For processes started in a session of their own by another invocation (the services
    manager's pid files): the pid is also the group id.
    """
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + timeout
    while process_exists(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    _kill_group(pid)


def stop_process(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM the leader, wait up to ``timeout``, then SIGKILL its whole process group.

    The group kill also ends what the leader started and left behind (code servers, run
    workers), and runs even when the leader was already killed on its own.
    """
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    _kill_group(process.pid)
    process.wait(timeout=10)


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL the process's whole group at once: no shutdown, no acknowledgement."""
    _kill_group(process.pid)
    process.wait(timeout=10)


@dataclass
class Process:
    """A started subprocess, the leader of its own process group, and its log."""

    name: str
    popen: subprocess.Popen
    log: Path

    @property
    def pid(self) -> int:
        """The leader's pid (also the process group's id)."""
        return self.popen.pid

    def running(self) -> bool:
        """Whether the leader still runs (reaping it if it ended)."""
        return self.popen.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        """The end of its output, for error messages."""
        return tail(self.log, lines)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL the group after ``timeout`` (see :func:`stop_process`)."""
        stop_process(self.popen, timeout)


def start(
    name: str,
    command: Sequence[str],
    *,
    log: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Process:
    """Start ``command`` in a session of its own, default signal handlers, output to ``log``.

    ``env`` is laid over this process's environment.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        popen = subprocess.Popen(
            [sys.executable, "-c", _EXEC_WITH_DEFAULT_SIGNALS, *command],
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Process(name, popen, log)


def start_and_wait(
    name: str,
    command: Sequence[str],
    *,
    log: Path,
    ready: Callable[[], bool],
    timeout: float,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Process:
    """Start a process and wait until ``ready``; never leave a half-started one behind."""
    process = start(name, command, log=log, env=env, cwd=cwd)
    try:
        wait_until(name, ready, timeout=timeout, log=log, exited=lambda: not process.running())
    except BaseException:
        process.stop(timeout=5)
        raise
    return process


@contextmanager
def running(
    name: str,
    command: Sequence[str],
    *,
    ready: Callable[[], bool],
    timeout: float,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    log: Path | None = None,
    stop_timeout: float = 10.0,
) -> Iterator[Process]:
    """A started and ready process for the ``with`` block; stopped on exit.

    Without ``log``, output goes to a temporary file removed afterwards.
    """
    own_log = log is None
    if log is None:
        log = temporary_log(name)
    try:
        process = start_and_wait(
            name, command, log=log, ready=ready, timeout=timeout, env=env, cwd=cwd
        )
        try:
            yield process
        finally:
            process.stop(stop_timeout)
    finally:
        if own_log:
            log.unlink(missing_ok=True)


@contextmanager
def serving(server: _Server) -> Iterator[_Server]:
    """``server`` (a stdlib HTTP server a test scripts) answering on a thread for the block.

    Shut down and its socket closed afterwards, so a test's peer never outlives the test.
    """
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
