"""What every local service shares: settings, commands, Maven jars, pid files, errors."""

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from devstack import harness

HOST = harness.HOST
DEVSTACK = Path(__file__).resolve().parents[1]
PROJECT = DEVSTACK.parent
HOME = Path(os.environ.get("DEVSTACK_HOME", PROJECT / ".devstack")).resolve()


class ServiceError(harness.StartError):
    """A service could not be installed or started; the message names it and shows its log."""


def log(message: str) -> None:
    """Progress goes to stderr so that ``status`` output stays parseable."""
    sys.stderr.write(f"[devstack] {message}\n")
    sys.stderr.flush()


def run(cmd: list[str], *, check: bool = True, env: dict[str, str] | None = None, **kw):
    """Run a command, capturing output, with the failing command's output in the error."""
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env={**os.environ, **(env or {})}, **kw
    )
    if check and proc.returncode != 0:
        raise ServiceError(
            f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout}{proc.stderr}"
        )
    return proc


def apt_install(*packages: str) -> None:
    """Install Debian packages that are missing (one ``apt-get update`` first)."""
    missing = [p for p in packages if run(["dpkg", "-s", p], check=False).returncode != 0]
    if not missing:
        return
    log(f"apt-get install {' '.join(missing)}")
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "update", "-qq"], env=env)
    run(["apt-get", "install", "-y", "-qq", *missing], env=env)


def maven_libs(name: str) -> Path:
    """Copy a pom's runtime jars into HOME/<name>-libs once (Maven's cache persists)."""
    target = HOME / f"{name}-libs"
    stamp = target / ".complete"
    pom = DEVSTACK / name / "pom.xml"
    if stamp.exists() and stamp.stat().st_mtime >= pom.stat().st_mtime:
        return target
    log(f"fetching {name} jars from Maven Central")
    shutil.rmtree(target, ignore_errors=True)
    run(
        [
            "mvn",
            "-B",
            "-q",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={target}",
        ]
    )
    stamp.touch()
    return target


def _pidfile(name: str) -> Path:
    return HOME / f"{name}.pid"


def start_service(
    name: str,
    cmd: Sequence[str],
    logfile: Path,
    ready: Callable[[], bool],
    timeout: float,
    env: dict[str, str] | None = None,
) -> None:
    """Start a long-running process from HOME, wait until ready, remember its pid.

    The pid file lets a later ``down`` (another invocation) stop it.
    """
    process = harness.start_and_wait(
        name, cmd, log=logfile, ready=ready, timeout=timeout, env=env, cwd=HOME
    )
    _pidfile(name).write_text(str(process.pid))


def pid_alive(name: str) -> int | None:
    """The pid from a service's pid file if that process still runs."""
    pidfile = _pidfile(name)
    if not pidfile.exists():
        return None
    pid = int(pidfile.read_text())
    return pid if harness.process_exists(pid) else None


def stop_service(name: str, timeout: float = 30) -> None:
    """SIGTERM (controlled shutdown), then SIGKILL after ``timeout``."""
    pid = pid_alive(name)
    if pid is not None:
        harness.stop_pid(pid, timeout)
    _pidfile(name).unlink(missing_ok=True)


@dataclass
class Service:
    """One local service: how to bring it up, whether it answers, how to stop it."""

    name: str
    port: int
    up: Callable[[], None]
    ready: Callable[[], bool]
    down: Callable[[], None]
