"""`casewatch bench pipeline` and `bench quota` as cli.md defines them, run cold in a fresh process.

Figures are the bench's business; these tests check what must hold whatever
the machine: the shapes, every case read once, nothing refused by the sandbox.
"""

from __future__ import annotations

import json

import pytest

from tests.test_cli import casewatch

pytestmark = pytest.mark.slow


def test_pipeline_reads_every_case_once_and_prints_the_contract(tmp_path) -> None:
    result = casewatch("bench", "pipeline", "--cases", "40", "--json", data_dir=tmp_path / "d")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert set(figures) == {"cases", "checks", "seconds", "checks_per_second", "cpu_ms_per_check"}
    assert figures["cases"] == 40 and figures["checks"] == 40
    assert figures["seconds"] > 0 and figures["checks_per_second"] > 0
    assert figures["cpu_ms_per_check"] > 0


def test_quota_stays_under_the_spike_arrest_and_uses_it(tmp_path) -> None:
    result = casewatch(
        "bench", "quota", "--rate", "8", "--seconds", "3", "--json", data_dir=tmp_path / "d"
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert set(figures) == {
        "rate_limit",
        "seconds",
        "requests",
        "achieved_rate",
        "utilization",
        "rejected_429",
    }
    assert figures["rate_limit"] == 8
    assert figures["rejected_429"] == 0
    # Paced, not bursting: never more than the limit allows in the window (plus the first slot).
    assert 0 < figures["requests"] <= 8 * 3 + 1
    assert figures["utilization"] == pytest.approx(figures["achieved_rate"] / 8, abs=0.01)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["pipeline", "--cases", "0"], "--cases"),
        (["quota", "--rate", "0"], "--rate"),
        (["quota", "--seconds", "-1"], "--seconds"),
    ],
)
def test_bad_arguments_are_refused_with_the_reason(tmp_path, args, message) -> None:
    result = casewatch("bench", *args, "--json", data_dir=tmp_path / "d")
    assert result.returncode == 2
    assert message in result.stderr and result.stdout == ""
