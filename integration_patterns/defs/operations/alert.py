"""What an alert is, and how it is kept free of secrets before it leaves the process.

An alert has a stable ``key`` (what is wrong where, e.g. ``kafka-stall:orders:0``) and a
``title`` that does not change while the condition lasts; numbers that move every tick go
in ``text``. Deduplication compares the key and the fingerprint (severity and title), so a
growing lag does not page anyone twice, but a warning that turns critical does.
"""

import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

SEVERITIES = ("info", "warning", "critical", "resolved")
MAX_TEXT_CHARS = 2000

_SECRET_PATTERNS = [
    # credentials in URLs: scheme://user:password@host
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://)[^\s/@:]+:[^\s/@]+@", re.I), r"\1***:***@"),
    (re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+", re.I), r"\1 ***"),
    # key=value and key: value pairs whose key says secret
    (
        re.compile(
            r"((?:password|passwd|pwd|secret|token|api[_-]?key|authorization)[\"']?\s*[=:]\s*"
            r"[\"']?)[^\s\"',;&]+",
            re.I,
        ),
        r"\1***",
    ),
    (re.compile(r"\bwhsec_[A-Za-z0-9+/=]+"), "whsec_***"),
    # Slack incoming-webhook URLs are secrets in themselves
    (re.compile(r"https://hooks\.slack\.com/\S+"), "https://hooks.slack.com/***"),
]
_SECRET_ENV_NAME = re.compile(r"SECRET|PASSWORD|TOKEN|API_KEY|WEBHOOK_URL", re.I)


def redact(text: str) -> str:
    """Mask credentials: known patterns, and the value of every secret-named env variable.

    The environment is the only place secrets come from (``dg.EnvVar``), so replacing
    their values catches a secret that an exception message quoted in full.
    """
    for name, value in os.environ.items():
        if _SECRET_ENV_NAME.search(name) and len(value) >= 6 and value in text:
            text = text.replace(value, "***")
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


@dataclass(frozen=True)
class Alert:
    """One condition worth an operator's attention."""

    key: str
    title: str
    text: str = ""
    severity: str = "warning"
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}: {self.severity!r}")

    @property
    def fingerprint(self) -> str:
        """What must change for a repeated alert to be sent again before its repeat time."""
        return f"{self.severity}:{self.title}"

    def payload(self) -> dict[str, Any]:
        """The JSON body the sinks send, redacted and bounded."""
        text = redact(self.text)
        if len(text) > MAX_TEXT_CHARS:
            text = text[: MAX_TEXT_CHARS - 20] + f"... ({len(text)} chars)"
        return {
            "type": "alert.resolved" if self.severity == "resolved" else "alert.firing",
            "key": self.key,
            "severity": self.severity,
            "title": redact(self.title),
            "text": text,
            "details": {k: redact(str(v))[:200] for k, v in self.details.items()},
            "source": "integration_patterns",
            "timestamp": datetime.now(UTC).isoformat(),
        }
