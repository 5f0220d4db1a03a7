"""The local services manager: idempotent `up`, truthful `status`, clear failures."""

import os
import subprocess
import sys

from devstack import services
from integration_patterns_tests.conftest import PROJECT


def _manager(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "devstack.services", *args],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def test_status_reports_every_service_up():
    result = _manager("status")
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("postgresql", "rabbitmq", "kafka", "mongodb"):
        assert f"{name} " in result.stdout and "down" not in result.stdout


def test_second_up_reuses_running_services():
    pids_before = {name: services.pid_alive(name) for name in ("kafka", "mongo")}
    # The manager started them and knows their processes (two missing pids would be "equal").
    assert None not in pids_before.values(), pids_before
    result = _manager("up")
    assert result.returncode == 0, result.stderr
    assert "starting" not in result.stderr  # nothing was started again
    assert {name: services.pid_alive(name) for name in ("kafka", "mongo")} == pids_before


def test_unknown_service_is_a_usage_error():
    result = _manager("up", "redis")
    assert result.returncode == 2
    assert "unknown service(s): redis" in result.stderr


def test_a_service_that_cannot_start_fails_naming_it_with_its_log(tmp_path, free_port):
    # A Mongo server on a port that java cannot bind (already taken by our listener).
    import socket

    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", free_port))
        # Not listening: the port is taken but refuses connections, so the readiness check
        # can never pass and the manager must give up with a clear message.
        result = _manager(
            "up", "mongodb", env={"MONGO_PORT": str(free_port), "DEVSTACK_HOME": str(tmp_path)}
        )
    assert result.returncode == 1
    assert "FAILED mongodb" in result.stderr
    assert "mongo.log" in result.stderr


def test_the_suite_fails_rather_than_skips_when_a_service_is_down(free_port):
    # A fixture whose service does not answer must fail its tests, never skip them: a green
    # run with MongoDB down would have tested nothing.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "integration_patterns_tests/test_mongo_resource.py::test_insert_then_group_and_max",
        ],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "MONGO_PORT": str(free_port)},
    )
    assert result.returncode == 1, result.stdout[-2000:]
    assert "1 error" in result.stdout and "skipped" not in result.stdout
    assert f"MongoDB at 127.0.0.1:{free_port} is not answering" in result.stdout
