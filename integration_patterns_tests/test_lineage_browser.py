"""The global asset lineage, as a data engineer sees it: a real webserver in a real browser.

``dagster-webserver`` serves the code location from a temporary instance (no daemon: no
sensor ticks, no runs); Debian's ``chromium``, driven by Playwright, opens the global
lineage with every group expanded, zooms out until the whole graph is in view, and looks
for each pattern's source and sink node by name. The screenshot is kept in
``integration_patterns_tests/artifacts/lineage.png`` (git-ignored) for a human to look at.

Chromium comes from ``make browser`` (part of ``make test``), never ``playwright install``.
Nodes drawn at a small scale show middle-truncated names, so the names asserted here are
the short ones (every source and sink listed is at most 18 characters).
"""

import shutil
import sys
from pathlib import Path

import pytest
from playwright.sync_api import Page, sync_playwright

from devstack import harness
from integration_patterns_tests.conftest import PROJECT

ARTIFACT = Path(__file__).parent / "artifacts" / "lineage.png"
GROUPS = ["enrichment", "external_api", "messaging", "platform", "webhooks"]
# pattern -> (source nodes, sink nodes), as test_defs.FLOWS declares them through deps
ENDS = {
    "external_api": (["partner_api"], ["partner_records"]),
    "enrichment": (
        ["postgres_customers", "postgres_orders", "mongo_user_events"],
        ["customer_analytics"],
    ),
    "webhooks": (
        ["shop_webhooks", "stripe_webhooks", "github_webhooks", "svix_webhooks"],
        ["webhook_orders", "webhook_payments", "webhook_users"],
    ),
    "messaging": (["kafka_orders_topic"], ["order_results"]),
}
NAMES = [name for sources, sinks in ENDS.values() for name in sources + sinks]


def chromium() -> str:
    path = shutil.which("chromium")
    assert path, "Debian's chromium is missing: `make browser` installs it"
    return path


@pytest.fixture
def webserver(tmp_path, free_port):
    """The location's webserver on a free port, with a throw-away instance; its URL."""
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\nnux:\n  enabled: false\n")
    url = f"http://127.0.0.1:{free_port}"
    command = [
        str(Path(sys.executable).parent / "dagster-webserver"),
        *("-w", str(PROJECT / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(free_port)),
    ]
    # Started from the temporary directory: the Dagster CLI reads .env from its cwd.
    with harness.running(
        "dagster-webserver",
        command,
        ready=lambda: harness.http_ok(f"{url}/server_info"),
        timeout=120,
        env={"DAGSTER_HOME": str(tmp_path)},
        cwd=tmp_path,
        log=tmp_path / "webserver.log",
    ):
        yield url


# True when the element at the middle of the name is the name itself: drawn, inside the
# window and covered by nothing (a node under the page header is not seen by anyone).
_SEEN = """e => {
    const r = e.getBoundingClientRect();
    const hit = document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2);
    return hit !== null && (hit === e || e.contains(hit));
}"""


def _visible(page: Page, name: str) -> bool:
    """One node shows ``name`` and a user would see it."""
    node = page.get_by_text(name, exact=True)
    return node.count() == 1 and node.is_visible() and node.evaluate(_SEEN)


def test_every_pattern_is_drawn_from_its_source_to_its_sink(webserver):
    expanded = ",".join(f"global@global:{group}" for group in GROUPS)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), headless=True)
        try:
            page = browser.new_page(viewport={"width": 1800, "height": 2400})
            # The code location loads behind the webserver: wait for the first node.
            page.goto(f"{webserver}/asset-groups?expanded={expanded}", timeout=60_000)
            page.get_by_text("partner_api", exact=True).wait_for(timeout=90_000)
            # The graph opens at reading scale on its top; zoom out until all of it shows
            # (nodes out of view are not drawn at all).
            zoom_out = page.get_by_role("img", name="zoom_out")
            for _ in range(12):
                if all(_visible(page, name) for name in NAMES):
                    break
                zoom_out.click()
                page.wait_for_timeout(250)
            ARTIFACT.parent.mkdir(exist_ok=True)
            page.screenshot(path=ARTIFACT)
            sys.stdout.write(f"lineage screenshot: {ARTIFACT}\n")
            missing = {
                pattern: [n for n in sources + sinks if not _visible(page, n)]
                for pattern, (sources, sinks) in ENDS.items()
            }
            assert not any(missing.values()), f"not drawn: {missing}; see {ARTIFACT}"
        finally:
            browser.close()
