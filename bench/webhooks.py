"""Signed deliveries stored durably per second, against a bare 202 endpoint (same stack).

Both servers are one uvicorn worker running FastAPI; ``wrk`` drives them with the same
pre-signed Standard Webhooks requests (distinct ids, so every request is a new delivery).
"Ours" counts only what reached the inbox: new ``webhook_inbox`` rows divided by the run's
duration, so a receiver that answered without storing could not score. Latency p50/p99 come
from wrk. Runs alternate ours/baseline and the medians are reported.
"""

import re
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from psycopg import sql

from bench.report import Comparison, write
from devstack import harness
from devstack.webhook_fixtures import (
    encode,
    new_standard_secret,
    receiver_env,
    running_receiver,
    sample_event,
    sign_standard,
)
from integration_patterns.resources.postgres import PostgresResource

REPETITIONS = 3
SECONDS = 5
CONNECTIONS = 32
THREADS = 2
PER_RUN = 60_000  # pre-signed deliveries per run; more than the receiver stores in SECONDS

LUA = r"""
local counter = 0
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end
function init(args)
  reqs = {}
  local n, threads = 0, tonumber(args[2])
  for line in io.lines(args[1]) do
    if n % threads == tid then
      local id, ts, sig, body = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
      reqs[#reqs + 1] = wrk.format("POST", "/webhooks/bench", {
        ["Content-Type"] = "application/json",
        ["webhook-id"] = id, ["webhook-timestamp"] = ts, ["webhook-signature"] = sig,
      }, body)
    end
    n = n + 1
  end
  i = 0
end
function request()
  i = i % #reqs + 1
  return reqs[i]
end
"""


def bare_app():
    """The baseline: the same route on the same stack, answering 202 and doing nothing."""
    from fastapi import FastAPI, Response

    app = FastAPI()

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/webhooks/{source}", status_code=202)
    async def receive(source: str) -> Response:
        return Response(status_code=202)

    return app


def write_requests(path: Path, secret: str, run: str) -> None:
    """PER_RUN signed deliveries, one per line: id, timestamp, signature, body."""
    lines = []
    for n in range(PER_RUN):
        payload = sample_event("order.created", n, delivery_id=f"bench-{run}-{n}")
        body = encode(payload)
        h = sign_standard(body, [secret], msg_id=payload["id"])
        lines.append(
            f"{h['webhook-id']}\t{h['webhook-timestamp']}\t{h['webhook-signature']}\t"
            + body.decode()
        )
    path.write_text("\n".join(lines) + "\n")


def run_wrk(url: str, script: Path, data: Path) -> dict[str, float]:
    """Requests/s and p50/p99 latency (ms) of one wrk run."""
    out = subprocess.run(
        [
            "wrk",
            f"-t{THREADS}",
            f"-c{CONNECTIONS}",
            f"-d{SECONDS}s",
            "--latency",
            "-s",
            str(script),
            url,
            "--",
            str(data),
            str(THREADS),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    duration = float(re.search(r"requests in ([\d.]+)s", out).group(1))  # type: ignore[union-attr]
    return {"rps": rps, "duration": duration, "p50": _ms(out, "50%"), "p99": _ms(out, "99%")}


def _ms(out: str, pct: str) -> float:
    value, unit = re.search(rf"^\s+{pct}\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def count_rows(postgres: PostgresResource, schema: str) -> int:
    return postgres.fetch_all(f'SELECT count(*) FROM "{schema}".webhook_inbox')[0][0]


def main() -> None:
    postgres = PostgresResource.from_env()
    schema = f"wh_bench_{uuid.uuid4().hex[:8]}"
    secret = new_standard_secret()
    env = receiver_env({"bench": ("standard", [secret])}, schema=schema)
    port = harness.free_port()
    bare_url = f"http://{harness.HOST}:{port}"
    bare_command = [sys.executable, "-m", "uvicorn", "bench.webhooks:bare_app", "--factory"]
    bare_command += ["--port", str(port), "--log-level", "warning", "--no-access-log"]
    bare = harness.running(
        "bare_app", bare_command, ready=lambda: harness.http_ok(f"{bare_url}/healthz"), timeout=120
    )
    ours_runs: list[dict[str, float]] = []
    bare_runs: list[dict[str, float]] = []
    try:
        with tempfile.TemporaryDirectory() as tmp, running_receiver(env) as receiver, bare:
            script = Path(tmp) / "signed.lua"
            script.write_text(LUA)
            for rep in range(REPETITIONS):
                data = Path(tmp) / f"requests-{rep}.tsv"
                write_requests(data, secret, f"{rep}")
                before = count_rows(postgres, schema)
                ours = run_wrk(receiver.url, script, data)
                stored = count_rows(postgres, schema) - before
                ours["stored_per_s"] = stored / ours["duration"]
                ours_runs.append(ours)
                bare_runs.append(run_wrk(bare_url, script, data))
    finally:
        with postgres.get_connection() as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        postgres.close()

    def med(runs: list[dict[str, float]], key: str) -> float:
        return round(statistics.median(r[key] for r in runs), 2)

    write(
        "webhooks",
        [
            Comparison(
                name="vs bare 202",
                unit="deliveries/s",
                ours=med(ours_runs, "stored_per_s"),
                baseline_name="bare 202",
                baseline=med(bare_runs, "rps"),
                goal=0.5,
                extra={
                    "ours_p50_ms": med(ours_runs, "p50"),
                    "ours_p99_ms": med(ours_runs, "p99"),
                    "bare_p50_ms": med(bare_runs, "p50"),
                    "bare_p99_ms": med(bare_runs, "p99"),
                    "ours_http_rps": med(ours_runs, "rps"),
                    "runs": f"{REPETITIONS} x {SECONDS}s each, wrk -t{THREADS} -c{CONNECTIONS}",
                },
            )
        ],
    )
