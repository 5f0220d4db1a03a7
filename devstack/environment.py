"""The environment development processes start with: the caller's, ``.env``, ``.env.example``.

``make`` runs every command with ``uv run --env-file .env.example --env-file .env``: a
variable set in the process wins, then ``.env`` (yours, git-ignored), then ``.env.example``
(every setting's local default, so a setting added there later reaches an older ``.env``).
Python entry points that are not started by ``make`` (pytest, the demos, ``devstack.token``)
use this one function for the same result. The files are parsed by python-dotenv (quotes,
``export``, comments), values verbatim: no ``${VAR}`` expansion, so a secret holding ``$``
stays whole.
"""

import os
from collections.abc import Mapping
from pathlib import Path

from dotenv import dotenv_values

PROJECT = Path(__file__).resolve().parents[1]
ENV_FILES = (".env.example", ".env")  # later files win, as with repeated --env-file


def env_defaults(
    environ: Mapping[str, str] | None = None, project: Path = PROJECT
) -> dict[str, str]:
    """``environ`` (default: the process's) over ``.env`` over ``.env.example``."""
    layered: dict[str, str] = {}
    for name in ENV_FILES:
        path = project / name
        if path.exists():
            values = dotenv_values(path, interpolate=False)
            layered |= {key: value for key, value in values.items() if value is not None}
    return layered | dict(os.environ if environ is None else environ)


def load_env_files(project: Path = PROJECT) -> None:
    """Set in this process every variable the files hold and the process does not."""
    for key, value in env_defaults(project=project).items():
        os.environ.setdefault(key, value)
