"""The gateway's Dagster client against a GraphQL peer that answers what we script.

A real Dagster webserver (``test_gateway.py``) answers the happy paths and the common
refusals; the answers it gives only when something is wrong (a ``PythonError``, a 500, a
page that is not JSON, GraphQL ``errors``, a run of another code location) are scripted
here by a local HTTP server, so each must come back as the typed error the app maps to a
status (404 for "not found", 503 for "Dagster cannot answer"), never as a crash.
"""

import json
import re
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from devstack.harness import serving
from integration_patterns.services.gateway.dagster_api.client import DagsterClient
from integration_patterns.services.gateway.dagster_api.errors import (
    BackfillNotFoundError,
    DagsterError,
    DagsterUnavailableError,
    JobNotFoundError,
    RunNotFoundError,
)

LOCATION = "integration_patterns"
RUN_ID = "0b7a5c9e-1d2f-4a3b-8c4d-5e6f7a8b9c0d"
OPERATION = re.compile(r"(?:query|mutation) (\w+)")


class ScriptedGraphQL:
    """A GraphQL endpoint answering each operation with the next scripted reply."""

    def __init__(self) -> None:
        self.replies: dict[str, list[tuple[int, bytes]]] = {}
        self.requests: list[dict[str, Any]] = []
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                peer.requests.append(request)
                operation = OPERATION.search(request["query"])
                name = operation.group(1) if operation else ""
                status, body = peer.replies[name].pop(0)
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def reply(
        self, operation: str, data: Any = None, *, status: int = 200, raw: bytes = b""
    ) -> None:
        """Queue an answer to ``operation``: ``{"data": data}``, or ``raw`` bytes."""
        body = raw or json.dumps({"data": data}).encode()
        self.replies.setdefault(operation, []).append((status, body))


@pytest.fixture
def peer() -> Iterator[ScriptedGraphQL]:
    server = ScriptedGraphQL()
    with serving(server.httpd):
        yield server


@pytest.fixture
def client(peer: ScriptedGraphQL) -> Iterator[DagsterClient]:
    dagster = DagsterClient(peer.url, location=LOCATION, timeout=5)
    yield dagster
    dagster.close()


def run_node(location: str = LOCATION, status: str = "SUCCESS") -> dict[str, Any]:
    return {
        "__typename": "Run",
        "runId": RUN_ID,
        "jobName": "platform_smoke",
        "status": status,
        "creationTime": 1.0,
        "startTime": 2.0,
        "endTime": 3.25,
        "tags": [{"key": "gateway/subject", "value": "tests"}],
        "repositoryOrigin": {"repositoryLocationName": location},
    }


@pytest.mark.parametrize(
    ("status", "data", "raw", "expected"),
    [
        # Dagster's own "no such run".
        (
            200,
            {"runOrError": {"__typename": "RunNotFoundError", "message": "x"}},
            b"",
            RunNotFoundError,
        ),
        # A run of another code location is not the gateway's to show.
        (200, {"runOrError": run_node(location="elsewhere")}, b"", RunNotFoundError),
        # A Python error inside the webserver: Dagster cannot answer.
        (
            200,
            {"runOrError": {"__typename": "PythonError", "message": "boom"}},
            b"",
            DagsterUnavailableError,
        ),
        # A server error, a page that is not JSON, GraphQL errors: the same.
        (500, None, b"", DagsterUnavailableError),
        (200, None, b"<html>proxy error</html>", DagsterUnavailableError),
        (200, None, b'{"errors": [{"message": "Cannot query field"}]}', DagsterUnavailableError),
    ],
)
def test_a_run_dagster_cannot_give_is_a_typed_error(
    peer: ScriptedGraphQL,
    client: DagsterClient,
    status: int,
    data: Any,
    raw: bytes,
    expected: type[DagsterError],
) -> None:
    peer.reply("GatewayRun", data, status=status, raw=raw)
    with pytest.raises(expected):
        client.run(RUN_ID)


def test_a_run_of_this_location_is_mapped(peer: ScriptedGraphQL, client: DagsterClient) -> None:
    peer.reply("GatewayRun", {"runOrError": run_node()})
    run = client.run(RUN_ID)
    assert (run.run_id, run.job_name, run.status, run.finished) == (
        RUN_ID,
        "platform_smoke",
        "SUCCESS",
        True,
    )
    assert run.execution_time == 1.25
    assert run.tags == {"gateway/subject": "tests"}
    assert peer.requests[0]["variables"] == {"runId": RUN_ID}


def test_results_follow_the_event_cursor_across_pages(
    peer: ScriptedGraphQL, client: DagsterClient
) -> None:
    materialized = {
        "__typename": "MaterializationEvent",
        "stepKey": "customers",
        "partition": "2026-11-29",
        "assetKey": {"path": ["analytics", "customers"]},
        "metadataEntries": [
            {"__typename": "IntMetadataEntry", "label": "rows", "intValue": None, "intRepr": "12"},
            {
                "__typename": "FloatMetadataEntry",
                "label": "ratio",
                "floatValue": None,
                "floatRepr": "NaN",
            },
            {"__typename": "JsonMetadataEntry", "label": "counts", "jsonString": '{"a": 1}'},
        ],
    }
    checked = {
        "__typename": "AssetCheckEvaluationEvent",
        "stepKey": "customers",
        "evaluation": {
            "checkName": "no_nulls",
            "success": False,
            "severity": "ERROR",
            "partition": "2026-11-29",
            "description": None,
            "assetKey": {"path": ["analytics", "customers"]},
            "metadataEntries": [
                {"__typename": "TextMetadataEntry", "label": "why", "text": "3 nulls"}
            ],
        },
    }
    failed = {
        "__typename": "ExecutionStepFailureEvent",
        "stepKey": "orders",
        "error": {
            "message": "Error occurred while executing op orders:",
            "errorChain": [{"error": {"message": "ValueError: bad row\n"}}],
        },
    }
    page = {
        "__typename": "EventConnection",
        "cursor": "c1",
        "hasMore": True,
        "events": [materialized],
    }
    peer.reply("GatewayRunEvents", {"logsForRun": page})
    page = {
        "__typename": "EventConnection",
        "cursor": "c2",
        "hasMore": False,
        "events": [checked, failed],
    }
    peer.reply("GatewayRunEvents", {"logsForRun": page})

    assets, failures = client.results(RUN_ID)

    assert [r["variables"]["cursor"] for r in peer.requests] == [None, "c1"]
    entry = assets["analytics/customers[2026-11-29]"]
    assert entry["metadata"] == {"rows": 12, "ratio": "NaN", "counts": {"a": 1}}
    assert entry["checks"]["no_nulls"]["passed"] is False
    assert entry["checks"]["no_nulls"]["metadata"] == {"why": "3 nulls"}
    assert failures == [
        {
            "step_key": "orders",
            "message": "Error occurred while executing op orders:\nValueError: bad row",
        }
    ]


def test_a_backfill_of_another_location_is_not_found(
    peer: ScriptedGraphQL, client: DagsterClient
) -> None:
    backfill = {
        "__typename": "PartitionBackfill",
        "id": "abcdefgh",
        "status": "REQUESTED",
        "partitionNames": ["2026-11-29"],
        "partitionSetName": "x_partition_set",
        "partitionSet": {
            "pipelineName": "x",
            "repositoryOrigin": {"repositoryLocationName": "elsewhere"},
        },
        "runs": [],
    }
    peer.reply("GatewayBackfillStatus", {"partitionBackfillOrError": backfill})
    with pytest.raises(BackfillNotFoundError):
        client.backfill("abcdefgh")


def test_a_job_gone_between_listing_and_reading_partitions_is_not_found(
    peer: ScriptedGraphQL, client: DagsterClient
) -> None:
    jobs = {
        "repositoriesOrError": {
            "__typename": "RepositoryConnection",
            "nodes": [
                {
                    "name": "__repository__",
                    "location": {"name": LOCATION},
                    "jobs": [
                        {"name": "daily", "description": None},
                        {"name": "__ASSET_JOB", "description": None},
                    ],
                }
            ],
        }
    }
    peer.reply("GatewayJobs", jobs)
    gone = {"pipelineOrError": {"__typename": "PipelineNotFoundError", "message": "gone"}}
    peer.reply("GatewayPartitionKeys", gone)
    with pytest.raises(JobNotFoundError):
        client.partition_keys("daily")
    # Dagster's hidden asset jobs are never offered.
    assert [job.name for job in client.list_jobs()] == ["daily"]
