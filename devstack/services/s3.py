"""S3-compatible object storage: versitygw, built once with ``go install``, on a directory."""

import os
import shutil
import time
from pathlib import Path

from devstack.harness import http_ok
from devstack.services.common import (
    HOME,
    HOST,
    Service,
    ServiceError,
    apt_install,
    log,
    run,
    start_service,
    stop_service,
)

S3_PORT = int(os.environ.get("S3_PORT", "7070"))
S3_BUCKET = os.environ.get("S3_BUCKET", "integration-patterns")
S3_ACCESS_KEY = os.environ.get("AWS_ACCESS_KEY_ID", "devstack-access")
S3_SECRET_KEY = os.environ.get("AWS_SECRET_ACCESS_KEY", "devstack-secret-key")
S3_REGION = os.environ.get("AWS_REGION", "us-east-1")
# versitygw, an Apache-2.0 S3 gateway onto a POSIX directory, built from the Go module proxy.
VERSITYGW = "github.com/versity/versitygw/cmd/versitygw@v1.7.0"
S3_LOG = HOME / "s3" / "versitygw.log"


def _s3_ready() -> bool:
    return http_ok(f"http://{HOST}:{S3_PORT}/health")


def versitygw_binary() -> Path:
    """``go install`` the pinned versitygw once into HOME/bin (Go's module cache persists)."""
    binary = HOME / "bin" / "versitygw"
    stamp = HOME / "bin" / ".versitygw-version"
    if binary.exists() and stamp.exists() and stamp.read_text() == VERSITYGW:
        return binary
    if shutil.which("go") is None and not Path("/usr/local/go/bin/go").exists():
        apt_install("golang-go")
    go = shutil.which("go") or "/usr/local/go/bin/go"
    log(f"go install {VERSITYGW} (a few minutes the first time)")
    started = time.monotonic()
    run([go, "install", VERSITYGW], env={"GOBIN": str(HOME / "bin"), "CGO_ENABLED": "0"})
    stamp.write_text(VERSITYGW)
    log(f"versitygw built in {time.monotonic() - started:.0f}s")
    return binary


def _create_bucket() -> None:
    """Create the project's bucket through the S3 API itself (boto3, from dagster-aws)."""
    import boto3
    from botocore.exceptions import ClientError

    client = boto3.client(
        "s3",
        endpoint_url=f"http://{HOST}:{S3_PORT}",
        region_name=S3_REGION,
        aws_access_key_id=S3_ACCESS_KEY,
        aws_secret_access_key=S3_SECRET_KEY,
    )
    try:
        client.create_bucket(Bucket=S3_BUCKET)
        log(f"created bucket {S3_BUCKET}")
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise ServiceError(f"could not create bucket {S3_BUCKET}: {exc}") from exc


def s3_up() -> None:
    """Serve HOME/s3/root over S3 on loopback (metadata in sidecar files) and make the bucket.

    ``--sidecar`` keeps object metadata in files, so it works on filesystems without user
    xattrs; the root key pair checks every request's SigV4 signature, as AWS does.
    """
    if not _s3_ready():
        binary = versitygw_binary()
        root, meta = HOME / "s3" / "root", HOME / "s3" / "meta"
        root.mkdir(parents=True, exist_ok=True)
        meta.mkdir(parents=True, exist_ok=True)
        log("starting versitygw (S3)")
        start_service(
            "s3",
            [
                str(binary),
                "--port",
                f"{HOST}:{S3_PORT}",
                "--region",
                S3_REGION,
                "--health",
                "/health",
                "--quiet",
                "posix",
                "--sidecar",
                str(meta),
                str(root),
            ],
            S3_LOG,
            _s3_ready,
            60,
            env={"ROOT_ACCESS_KEY": S3_ACCESS_KEY, "ROOT_SECRET_KEY": S3_SECRET_KEY},
        )
    _create_bucket()


def s3_down() -> None:
    """Stop the gateway; the objects stay on disk under HOME/s3/root."""
    stop_service("s3", timeout=10)


SERVICE = Service("s3", S3_PORT, s3_up, _s3_ready, s3_down)
