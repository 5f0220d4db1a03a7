"""The development harness every subprocess of the tests, demo and benchmarks goes through.

Why: a start-up that fails must fail at once with the process's own words, a process that
never answers must not be left running, and stopping must take everything the process
started with it (code servers and run workers outlive a daemon that is only signalled).
"""

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devstack import harness


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_free_port_span_is_bindable():
    port = harness.free_port(span=2)
    for candidate in (port, port + 1):
        with socket.socket() as sock:
            sock.bind((harness.HOST, candidate))  # raises if taken


def test_a_process_that_exits_at_start_fails_at_once_with_its_log(tmp_path: Path):
    started = time.monotonic()
    with pytest.raises(harness.StartError, match=r"(?s)broken-tool exited.*cannot bind"):
        harness.start_and_wait(
            "broken-tool",
            python("import sys; print('cannot bind 127.0.0.1:1'); sys.exit(3)"),
            log=tmp_path / "broken.log",
            ready=lambda: False,
            timeout=60,
        )
    assert time.monotonic() - started < 30  # not the 60 s timeout


def test_a_process_never_ready_is_stopped_after_the_timeout(tmp_path: Path):
    pid_file = tmp_path / "pid"
    code = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    with pytest.raises(harness.StartError, match="did not become ready within 1s"):
        harness.start_and_wait(
            "sleeper", python(code), log=tmp_path / "sleeper.log", ready=lambda: False, timeout=1
        )
    assert not harness.process_exists(int(pid_file.read_text()))


def test_stop_ends_the_whole_group_even_a_child_ignoring_sigterm(tmp_path: Path):
    child_pid = tmp_path / "child"
    child = (
        "import os, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        f"open({str(child_pid)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    )
    leader = "import subprocess, sys, time; "
    leader += f"subprocess.Popen([sys.executable, '-c', {child!r}]); time.sleep(60)"
    with harness.running(
        "leader", python(leader), ready=child_pid.exists, timeout=30, stop_timeout=2
    ) as process:
        assert process.running()
    assert not process.running()
    deadline = time.monotonic() + 5
    while harness.process_exists(int(child_pid.read_text())) and time.monotonic() < deadline:
        time.sleep(0.05)  # the SIGKILLed child is reaped by init
    assert not harness.process_exists(int(child_pid.read_text()))


def test_children_get_default_signal_handlers_even_if_ours_ignore_them(tmp_path: Path):
    # A shell's background job starts with SIGINT ignored, and Dagster's CLIs then ignore
    # SIGTERM too: the harness restores the defaults, so its stop() works on them.
    code = "import signal; print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN)"
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        plain = subprocess.run(python(code), capture_output=True, text=True, check=True)
        process = harness.start("probe", python(code), log=tmp_path / "probe.log")
        process.popen.wait(timeout=30)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert plain.stdout.strip() == "True"  # inherited "ignored", as Dagster's CLIs would be
    assert process.log.read_text().strip() == "False"
