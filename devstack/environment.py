"""The environment development processes start with: the caller's, then ``.env`` defaults."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]


def env_defaults() -> dict[str, str]:
    """The environment with .env (or .env.example) filling what the caller did not set."""
    env = dict(os.environ)
    env_file = PROJECT / ".env"
    if not env_file.exists():
        env_file = PROJECT / ".env.example"
    for line in env_file.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            env.setdefault(key.strip(), value.strip())
    return env
