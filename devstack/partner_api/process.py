"""The simulator as a real subprocess on a free port, started and stopped by the harness."""

import json
import sys
from pathlib import Path
from typing import Any

import httpx

from devstack import harness


class SimulatorProcess:
    """The simulator as a real subprocess on a free port, for tests, demo and benchmarks.

    Example:
        ```python
        with SimulatorProcess(config={"total_records": 50}) as sim:
            sim.reset(faults={"rate_limit": 0.2})
            httpx.get(f"{sim.url}/v2/data")
            assert sim.stats()["violations"] == []
        ```
    """

    def __init__(self, *, port: int | None = None, config: dict[str, Any] | None = None) -> None:
        self.port = port or harness.free_port()
        self.url = f"http://{harness.HOST}:{self.port}"
        #: applied under every reset, e.g. the test's client credentials
        self.base_config = dict(config or {})
        self._process: harness.Process | None = None
        self._log: Path | None = None

    def __enter__(self) -> "SimulatorProcess":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 30.0) -> None:
        """Start uvicorn and wait until ``/healthz`` answers; StartError with the log otherwise."""
        cmd = [sys.executable, "-m", "devstack.partner_api"]
        cmd += ["--port", str(self.port), "--config", json.dumps(self.base_config)]
        self._log = harness.temporary_log("partner_api")
        try:
            self._process = harness.start_and_wait(
                "partner-API simulator",
                cmd,
                log=self._log,
                ready=lambda: harness.http_ok(f"{self.url}/healthz"),
                timeout=timeout,
            )
        except harness.StartError:
            self._log.unlink(missing_ok=True)
            raise

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s; the log is removed."""
        if self._process is not None:
            self._process.stop(timeout=5)
            self._process = None
        if self._log is not None:
            self._log.unlink(missing_ok=True)
            self._log = None

    def reset(self, **config: Any) -> None:
        """Default config + ``base_config`` + ``config``; tokens and statistics cleared."""
        self._admin("reset", {**self.base_config, **config})

    def configure(self, **config: Any) -> None:
        """Change settings now, keeping tokens and statistics."""
        self._admin("config", config)

    def stats(self) -> dict[str, Any]:
        """The simulator's counters (see ``SimulatorState.stats``)."""
        response = httpx.get(f"{self.url}/admin/stats", timeout=5.0)
        response.raise_for_status()
        return response.json()

    def _admin(self, what: str, body: dict[str, Any]) -> None:
        response = httpx.post(f"{self.url}/admin/{what}", json=body, timeout=5.0)
        if response.status_code != 200:
            raise ValueError(f"simulator refused {what}: {response.text}")
