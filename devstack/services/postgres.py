"""PostgreSQL 15 from apt: the ``15/main`` cluster on loopback, the project's role and databases."""

import os
from pathlib import Path

from devstack.harness import port_open, wait_until
from devstack.services.common import HOST, Service, apt_install, log, run

PG_VERSION = "15"
PG_PORT = int(os.environ.get("POSTGRES_PORT", "5432"))
PG_USER = os.environ.get("POSTGRES_USER", "integration")
PG_PASSWORD = os.environ.get("POSTGRES_PASSWORD", "integration")
PG_DATABASES = ("integration_patterns", "dagster")
PG_LOG = Path(f"/var/log/postgresql/postgresql-{PG_VERSION}-main.log")


def _psql(sql: str, db: str = "postgres") -> str:
    return run(
        ["runuser", "-u", "postgres", "--", "psql", "-p", str(PG_PORT), "-d", db, "-tAc", sql]
    ).stdout.strip()


def _pg_ready() -> bool:
    return (
        port_open(PG_PORT)
        and run(["pg_isready", "-h", HOST, "-p", str(PG_PORT)], check=False).returncode == 0
    )


def postgres_up() -> None:
    """Start the apt cluster on loopback and create the project's role and databases."""
    apt_install(f"postgresql-{PG_VERSION}", f"postgresql-client-{PG_VERSION}")
    clusters = run(["pg_lsclusters", "-h"]).stdout
    if not any(line.split()[:2] == [PG_VERSION, "main"] for line in clusters.splitlines()):
        run(["pg_createcluster", PG_VERSION, "main", "-p", str(PG_PORT)])
    if not _pg_ready():
        log("starting PostgreSQL")
        run(
            [
                "pg_ctlcluster",
                PG_VERSION,
                "main",
                "start",
                "--",
                "-o",
                f"-c listen_addresses={HOST} -c port={PG_PORT}",
            ],
            check=False,
        )
        wait_until("postgresql", _pg_ready, timeout=60, log=PG_LOG)
    if _psql(f"SELECT 1 FROM pg_roles WHERE rolname = '{PG_USER}'") != "1":
        # CREATEROLE lets tests make throw-away roles (e.g. to trace a secret end to end).
        _psql(f"CREATE ROLE {PG_USER} LOGIN PASSWORD '{PG_PASSWORD}' CREATEDB CREATEROLE")
    for db in PG_DATABASES:
        if _psql(f"SELECT 1 FROM pg_database WHERE datname = '{db}'") != "1":
            _psql(f"CREATE DATABASE {db} OWNER {PG_USER}")


def postgres_down() -> None:
    """Stop the cluster (fast mode: roll back open transactions)."""
    run(["pg_ctlcluster", PG_VERSION, "main", "stop", "-m", "fast"], check=False)


SERVICE = Service("postgresql", PG_PORT, postgres_up, _pg_ready, postgres_down)
