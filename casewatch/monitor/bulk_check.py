"""Checking a list of receipts once, as fast as the budget allows.

Used by `casewatch check`, and through monitor.budgeted_check by the web app's
and the API's bulk status checks: invalid
receipts are reported without costing a call, repeats are asked once, rate
limits and outages are waited out a few times before an item is given up.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from casewatch.core.receipts import InvalidReceipt, normalize_receipt, parse_receipt
from casewatch.core.statuses import Classification, classify
from casewatch.monitor.pacing import Pacer
from casewatch.uscis.source import CaseStatusSource, Found, Outcome, RateLimited, Unavailable

# Waits longer than this (a daily quota reset, a night-time closure) are not
# waited out: the item is reported as it stands.
MAX_WAIT_SECONDS = 60.0


@dataclass(frozen=True)
class InvalidInput:
    message: str
    error: str = "invalid_receipt"


@dataclass(frozen=True)
class CheckResult:
    """What one input line turned into."""

    input: str
    receipt_number: str
    outcome: Outcome | InvalidInput
    classification: Classification | None

    @property
    def ok(self) -> bool:
        return isinstance(self.outcome, Found)


def fetch_with_retries(
    source: CaseStatusSource,
    receipt_number: str,
    pacer: Pacer,
    *,
    attempts: int = 4,
    sleep_backoff: float = 1.0,
) -> Outcome:
    """Ask once per attempt, backing everyone off on 429/503 as USCIS asks."""
    outcome: Outcome | None = None

    def paced() -> bool:
        pacer.wait()
        return True

    for attempt in range(attempts):
        outcome = source.fetch(receipt_number, pace=paced)
        if not isinstance(outcome, RateLimited | Unavailable):
            return outcome
        wait = outcome.retry_after
        if wait is None:
            wait = sleep_backoff * (2**attempt)
        if wait > MAX_WAIT_SECONDS or attempt == attempts - 1:
            return outcome
        pacer.pause(wait)
    assert outcome is not None
    return outcome


def check_receipts(
    inputs: Sequence[str],
    source: CaseStatusSource,
    pacer: Pacer,
    *,
    workers: int = 8,
    on_result: Callable[[CheckResult], None] | None = None,
) -> list[CheckResult]:
    """Check every input; results come back in input order, one per input."""
    numbers: list[str] = []
    invalid: dict[int, InvalidInput] = {}
    for index, text in enumerate(inputs):
        numbers.append(normalize_receipt(text))
        try:
            parse_receipt(text)
        except InvalidReceipt as exc:
            invalid[index] = InvalidInput(str(exc))
    unique = list(dict.fromkeys(n for i, n in enumerate(numbers) if i not in invalid))
    outcomes: dict[str, Outcome] = {}

    def work(number: str) -> None:
        outcomes[number] = fetch_with_retries(source, number, pacer)
        if on_result is not None:
            on_result(_result(number, number, outcomes[number]))

    for index, problem in invalid.items():
        if on_result is not None:
            on_result(CheckResult(inputs[index], numbers[index], problem, None))
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(unique) or 1))) as pool:
        list(pool.map(work, unique))
    return [
        CheckResult(text, numbers[i], invalid[i], None)
        if i in invalid
        else _result(text, numbers[i], outcomes[numbers[i]])
        for i, text in enumerate(inputs)
    ]


def _result(text: str, number: str, outcome: Outcome) -> CheckResult:
    classification = None
    if isinstance(outcome, Found):
        status = outcome.status
        classification = classify(status.title_en or status.title_es)
        if classification.is_unknown and status.title_es:
            spanish = classify(status.title_es)
            if not spanish.is_unknown:
                classification = spanish
    return CheckResult(text, number, outcome, classification)


def result_json(result: CheckResult, source: str) -> dict[str, object]:
    """One item of the `--json` array, exactly as cli.md defines it."""
    outcome = result.outcome
    item: dict[str, object] = {
        "receipt_number": result.receipt_number,
        "ok": result.ok,
        "error": outcome.error,
        "message": getattr(outcome, "message", None),
        "form_type": None,
        "title_en": None,
        "title_es": None,
        "description_en": None,
        "status": None,
        "category": None,
        "urgency": None,
        "confidence": None,
        "source": source,
    }
    if isinstance(outcome, Found):
        status = outcome.status
        item.update(
            message=status.message or None,
            form_type=status.form_type or None,
            title_en=status.title_en or None,
            title_es=status.title_es or None,
            description_en=status.description_en or None,
        )
    if result.classification is not None:
        item.update(
            status=result.classification.status,
            category=result.classification.category,
            urgency=result.classification.urgency,
            confidence=result.classification.confidence,
        )
    return item
