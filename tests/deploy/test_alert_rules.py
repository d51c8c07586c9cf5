"""deploy/prometheus/alerts.yml: valid for promtool, each alert unit-tested, each with its runbook."""

from __future__ import annotations

import re
import subprocess

from tests.deploy.artifacts import ALERT_TESTS, ALERTS, OPERATIONS, alert_names, heading_anchors, runbook_urls

EXPECTED = {
    "SesameVerificationFailureSpike",
    "SesameSmsFailureRate",
    "SesameHsmErrors",
    "SesameRedisUnreachable",
    "SesameRedisRefusing",
    "SesameNotServing",
    "SesameWorkersDown",
    "SesameCertificateExpiresSoon",
    "SesameOutboxBacklog",
    "SesameOutboxOldestEntryAge",
    "SesameSmsAllBreakersOpen",
    "SesameSmsBreakerOpen",
    "SesameJournalNotSealed",
    "SesameJournalNotArchived",
    "SesameRiskDenialSpike",
    "SesameCallsShed",
    "SesameScrapeFailing",
}


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=120, check=False)


def test_promtool_checks_the_rules() -> None:
    """`promtool check rules` accepts the file and counts every alert."""
    checked = _promtool("check", "rules", str(ALERTS))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(EXPECTED)} rules found" in checked.stdout


def test_promtool_unit_tests_pass() -> None:
    """`promtool test rules` passes the unit tests of deploy/prometheus/alerts_test.yml."""
    tested = _promtool("test", "rules", str(ALERT_TESTS))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_has_a_unit_test() -> None:
    """Each alert is named by at least one `alertname:` of the unit tests."""
    tested = set(re.findall(r"alertname: (\S+)", ALERT_TESTS.read_text()))
    assert set(alert_names()) == EXPECTED
    assert tested == EXPECTED


def test_every_alert_links_to_its_runbook_section() -> None:
    """Each runbook_url is docs/operations.md#<the alert's name>, a heading of that file."""
    anchors = heading_anchors(OPERATIONS.read_text())
    assert runbook_urls() == [f"docs/operations.md#{name.lower()}" for name in alert_names()]
    assert {name.lower() for name in alert_names()} <= anchors
    assert "runbook" in anchors
