"""Celery worker processes for ``make worker``, the tests and the benchmark.

``python -m devstack.celery_workers --name worker-a`` runs one worker
in the foreground (``make worker``). ``celery_workers(["a", "b"], env=..., root=...)`` starts
several in the background for a test or a benchmark, each in its own session and its own
working directory under ``root`` (sharing nothing on disk), waits until each is consuming,
and stops them afterwards.

Each worker runs Celery's ``solo`` pool: one step at a time in the worker process itself, so
the code location is imported once per worker, and killing the worker kills its step (no
orphaned pool child keeps running it). Scale out with more workers, not more threads.
"""

import argparse
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from devstack import harness

APP = "integration_patterns.distributed.worker"
PROJECT = Path(__file__).resolve().parents[1]


def worker_command(name: str, loglevel: str = "INFO") -> list[str]:
    """The command line of one worker, named ``<name>@<host>`` in the event log."""
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        APP,
        "worker",
        "--pool",
        "solo",
        "--hostname",
        f"{name}@{socket.gethostname()}",
        "--loglevel",
        loglevel,
        # Gossip, mingle and heartbeats chat between workers; steps need none of it.
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]


@dataclass
class Worker:
    """A started worker: its name (as the event log shows it), process and log."""

    name: str
    process: subprocess.Popen
    log: Path
    workdir: Path

    @property
    def hostname(self) -> str:
        """The name Celery and the Dagster event log give the worker."""
        return f"{self.name}@{socket.gethostname()}"

    def kill(self) -> None:
        """SIGKILL the worker's whole session: no shutdown, no acknowledgement."""
        harness.kill_group(self.process)

    def stop(self, timeout: float = 15.0) -> None:
        """Warm shutdown (SIGTERM), then SIGKILL for anything left."""
        harness.stop_process(self.process, timeout)


def _ready(log: Path) -> bool:
    return log.exists() and " ready." in log.read_text(errors="replace")


@contextmanager
def celery_workers(
    names: Sequence[str], *, env: Mapping[str, str], root: Path, timeout: float = 120.0
) -> Iterator[dict[str, Worker]]:
    """Start one worker per name, each in ``root/<name>``; stop them all on exit."""
    workers: dict[str, Worker] = {}
    # The project on the path, whatever the working directory (tests import job factories).
    pythonpath = os.pathsep.join(p for p in (str(PROJECT), env.get("PYTHONPATH", "")) if p)
    try:
        for name in names:
            workdir = root / name
            workdir.mkdir(parents=True, exist_ok=True)
            log = workdir / "worker.log"
            with log.open("ab") as out:
                process = subprocess.Popen(
                    worker_command(name),
                    cwd=workdir,
                    env={**env, "PYTHONPATH": pythonpath},
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            workers[name] = Worker(name, process, log, workdir)
        deadline = time.monotonic() + timeout
        for worker in workers.values():
            while not _ready(worker.log):
                if worker.process.poll() is not None or time.monotonic() > deadline:
                    tail = "\n".join(worker.log.read_text(errors="replace").splitlines()[-30:])
                    raise RuntimeError(f"celery worker {worker.name} did not start:\n{tail}")
                time.sleep(0.3)
        yield workers
    finally:
        for worker in workers.values():
            worker.stop()


def main(argv: list[str] | None = None) -> int:
    """``make worker``: one worker in the foreground, in its own working directory."""
    parser = argparse.ArgumentParser(description="Run a dagster-celery worker.")
    parser.add_argument("--name", default=f"worker-{os.getpid()}", help="worker name")
    parser.add_argument(
        "--workdir", type=Path, default=PROJECT / ".workers", help="parent of its working dir"
    )
    args = parser.parse_args(argv)
    workdir = (args.workdir / args.name).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    os.chdir(workdir)
    os.execv(sys.executable, worker_command(args.name))
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
