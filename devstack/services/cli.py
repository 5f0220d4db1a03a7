"""The command line: ``python -m devstack.services up|status|down [service ...]``."""

import argparse
import subprocess
import sys
import time

from devstack.harness import StartError
from devstack.services import kafka, mongo, partner_api, postgres, rabbitmq, s3
from devstack.services.common import HOME, HOST, log

SERVICES = {
    module.SERVICE.name: module.SERVICE
    for module in (postgres, rabbitmq, kafka, mongo, partner_api, s3)
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the command line."""
    parser = argparse.ArgumentParser(description="Install, start, check and stop local services.")
    parser.add_argument("action", choices=["up", "status", "down"])
    parser.add_argument("services", nargs="*", help=f"any of {', '.join(SERVICES)}")
    args = parser.parse_args(argv)
    unknown = set(args.services) - set(SERVICES)
    if unknown:
        parser.error(f"unknown service(s): {', '.join(sorted(unknown))}")
    chosen = [SERVICES[n] for n in (args.services or SERVICES)]
    HOME.mkdir(parents=True, exist_ok=True)
    failed = False
    for service in chosen:
        if args.action == "up":
            started = time.monotonic()
            try:
                service.up()
            except (StartError, subprocess.TimeoutExpired) as exc:
                log(f"FAILED {service.name}: {exc}")
                failed = True
                continue
            log(
                f"{service.name} ready on {HOST}:{service.port} ({time.monotonic() - started:.1f}s)"
            )
        elif args.action == "down":
            service.down()
            log(f"{service.name} stopped")
        else:
            state = "up" if service.ready() else "down"
            failed |= state == "down"
            sys.stdout.write(f"{service.name:<11} {state:<5} {HOST}:{service.port}\n")
    return 1 if failed else 0
