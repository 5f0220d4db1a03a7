"""The few Dagster GraphQL calls the development stacks make: load state, sensors, runs."""

from collections.abc import Mapping
from typing import Any

import httpx

from devstack.harness import StartError

LOCATION = "integration_patterns"

_WORKSPACE = """
{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename } } } } }
"""
_AUTOMATION = """
{ repositoriesOrError { ... on RepositoryConnection { nodes { location { name }
  sensors { id name sensorState { status } }
  schedules { id name scheduleState { status } } } } } }
"""
_STOP_SENSOR = "mutation S($id: String!) { stopSensor(id: $id) { __typename } }"
_STOP_SCHEDULE = "mutation S($id: String!) { stopRunningSchedule(id: $id) { __typename } }"
_START_SENSOR = """
mutation S($selector: SensorSelector!) {
  startSensor(sensorSelector: $selector) { __typename ... on PythonError { message } }
}
"""
_RUNS = """
{ runsOrError { ... on Runs { results {
    runId jobName status runConfigYaml tags { key value } startTime endTime
    assetCheckSelection { name }
} } } }
"""
_UNFINISHED = """
{ runsOrError(filter: {statuses: [QUEUED, NOT_STARTED, STARTING, STARTED, CANCELING]}) {
  ... on Runs { results { runId } } } }
"""
_TERMINATE = """
mutation T($ids: [String!]!) {
  terminateRuns(runIds: $ids, terminatePolicy: MARK_AS_CANCELED_IMMEDIATELY) { __typename }
}
"""


def graphql(url: str, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One GraphQL request to the webserver; its ``data``."""
    response = httpx.post(
        f"{url}/graphql", json={"query": query, "variables": variables or {}}, timeout=60
    )
    response.raise_for_status()
    return response.json()["data"]


def location_loaded(url: str, location: str = LOCATION) -> bool:
    """Whether the webserver has loaded ``location``; StartError if it failed to load."""
    try:
        body = httpx.post(f"{url}/graphql", json={"query": _WORKSPACE}, timeout=5).json()
    except (httpx.HTTPError, ValueError):
        return False
    entries = body.get("data", {}).get("workspaceOrError", {}).get("locationEntries", [])
    for entry in entries:
        if entry["name"] == location and entry["loadStatus"] == "LOADED":
            kind = (entry.get("locationOrLoadError") or {}).get("__typename")
            if kind != "RepositoryLocation":
                raise StartError(f"code location {location} failed to load ({kind})")
            return True
    return False


def stop_automation(url: str) -> list[str]:
    """Stop every running sensor and schedule of the location in this instance; their names.

    The state is stored in the instance, so a daemon started afterwards never ticks them.
    """
    stopped: list[str] = []
    for repo in graphql(url, _AUTOMATION)["repositoriesOrError"]["nodes"]:
        if repo["location"]["name"] != LOCATION:
            continue
        for kind, items, state, mutation in (
            ("sensor", repo["sensors"], "sensorState", _STOP_SENSOR),
            ("schedule", repo["schedules"], "scheduleState", _STOP_SCHEDULE),
        ):
            for item in items:
                if item[state]["status"] == "RUNNING":
                    graphql(url, mutation, {"id": item["id"]})
                    stopped.append(f"{kind} {item['name']}")
    return stopped


def start_sensor(url: str, name: str) -> None:
    """Start one sensor of the location in the stack's instance."""
    selector = {
        "repositoryLocationName": LOCATION,
        "repositoryName": "__repository__",
        "sensorName": name,
    }
    answer = graphql(url, _START_SENSOR, {"selector": selector})["startSensor"]
    if answer["__typename"] != "Sensor":
        raise RuntimeError(f"could not start sensor {name}: {answer}")


def runs(url: str) -> list[dict[str, Any]]:
    """Every run of the stack's instance, newest first."""
    return graphql(url, _RUNS)["runsOrError"]["results"]


def cancel_unfinished_runs(url: str) -> int:
    """Mark every unfinished run of the instance canceled; how many there were.

    For a stack with storage of its own only: runs a previous stack left queued, or
    orphaned when its run workers were killed, would otherwise be dequeued again.
    """
    ids = [r["runId"] for r in graphql(url, _UNFINISHED)["runsOrError"]["results"]]
    if ids:
        graphql(url, _TERMINATE, {"ids": ids})
    return len(ids)
