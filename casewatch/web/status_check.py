"""The bulk status check: paste receipts, watch the answers arrive, take them away as CSV.

The same check as `casewatch check`, asked within what keeps casewatch within its USCIS
grant (casewatch.monitor.budgeted_check, the one place for those rules, which the API's
status checks use too): the shared limiter's slots, the daily budget, the circuit breaker.
The page is one streamed response, a row for each answer as it arrives, so it works
without JavaScript. Nothing is stored about a receipt that is not a case; the
results wait a day, encrypted, for the CSV download.

Front desk may not run it: it spends the firm's budget (Action.CHECK_STATUS).
"""

from __future__ import annotations

import csv
import io
import logging
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import cast

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.functional import Promise
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from casewatch.accounts.models import Firm, Membership
from casewatch.accounts.permissions import Action, may
from casewatch.audit.chain import record as audit
from casewatch.audit.chain import staff_actor
from casewatch.config import uscis_settings
from casewatch.core.receipts import InvalidReceipt, normalize_receipt, parse_receipt
from casewatch.core.receipts import split_receipt_list as split_receipts
from casewatch.core.spreadsheet import safe_cell
from casewatch.monitor.budgeted_check import (
    BudgetedResults,
    SharedConnection,
    audit_check,
    beyond_budget,
    check_within_budget,
    receipts_to_ask,
    todays_budget,
)
from casewatch.monitor.bulk_check import CheckResult, InvalidInput, result_json
from casewatch.uscis.source import Found
from casewatch.web import held_files
from casewatch.web.access import staff_view
from casewatch.web.intake import known_cases
from casewatch.web.intake_forms import ReceiptsForm
from casewatch.web.labels import in_words

log = logging.getLogger(__name__)

CHECK = "status_check"
# The columns of the CSV: the fields of `casewatch check --json`, the input, the case.
CSV_COLUMNS = (
    "input",
    "receipt_number",
    "ok",
    "error",
    "message",
    "form_type",
    "title_en",
    "title_es",
    "status",
    "category",
    "urgency",
    "confidence",
    "source",
    "case",
)

# Why a receipt was not asked about (budgeted_check.NOT_ASKED_REASONS), and what a USCIS
# answer that is not a status means.
NOT_ASKED: dict[str, Promise] = {
    "quota": gettext_lazy("Not asked: today's USCIS budget is used up."),
    "circuit": gettext_lazy("Not asked: USCIS cannot be read right now; try again later."),
    "stopped": gettext_lazy("Not asked: the check was stopped."),
}
ANSWERS: dict[str, Promise] = {
    "invalid_input": gettext_lazy("Not a receipt number, so USCIS was not asked."),
    "invalid_receipt": gettext_lazy("USCIS says this receipt number is not valid."),
    "not_found": gettext_lazy("USCIS does not know this receipt number."),
    "rate_limited": gettext_lazy("USCIS asked casewatch to slow down; try again later."),
    "unavailable": gettext_lazy("USCIS could not be reached; try again later."),
    "auth_failed": gettext_lazy("USCIS refused casewatch's credentials."),
    "malformed_response": gettext_lazy("USCIS answered with something casewatch cannot read."),
}


@dataclass(frozen=True)
class Row:
    """One receipt's line on the page and in the CSV."""

    position: int  # where it first appears in the pasted list (1-based)
    input: str
    receipt_number: str
    ok: bool
    form_type: str
    title_en: str
    title_es: str
    category: str
    urgency: str
    problem: str  # a key of NOT_ASKED or ANSWERS, or ""
    case_id: int | None
    reason: str = ""  # why an input is not a receipt number, in the page's language

    @property
    def problem_label(self) -> Promise | str:
        label = NOT_ASKED.get(self.problem) or ANSWERS.get(self.problem)
        return label or ""


@staff_view(Action.CHECK_STATUS, change=Action.CHECK_STATUS)
def status_check(request: HttpRequest, membership: Membership) -> HttpResponse:
    """The form, or (POST) the results as they are read."""
    form = ReceiptsForm(request.POST or None)
    budget = todays_budget()
    if request.method == "POST" and form.is_valid():
        inputs = split_receipts(form.cleaned_data["receipts"])
        refusal = beyond_budget(inputs, budget)
        if not inputs:
            form.add_error("receipts", _("Paste at least one receipt number."))
        elif refusal is not None:
            form.add_error(
                "receipts",
                _(
                    "These are %(count)s receipts to ask about, but only %(left)s of today's "
                    "USCIS calls are left. Check fewer receipts, or wait until the budget "
                    "resets."
                )
                % {"count": refusal.asked, "left": refusal.left},
            )
        else:
            asked = len(receipts_to_ask(inputs))
            # The staff gate is typed for plain responses; a streamed one serves as well.
            return cast(HttpResponse, _stream(request, membership, inputs, asked))
    return render(
        request,
        "intake/check.html",
        {"firm": membership.firm, "form": form, "budget": budget},
    )


def _valid(text: str) -> bool:
    try:
        parse_receipt(text)
    except InvalidReceipt:
        return False
    return True


def _not_a_receipt(text: str) -> str:
    """What is wrong with an input that is not a receipt number, as the parser says it."""
    try:
        parse_receipt(text)
    except InvalidReceipt as exc:
        return in_words(exc.wording or str(exc))
    return ""


@staff_view(Action.CHECK_STATUS)
def status_check_csv(request: HttpRequest, membership: Membership, token: str) -> HttpResponse:
    """The results of one check as CSV, in the order pasted, safe to open in a spreadsheet."""
    meta = held_files.meta_of(token, membership, CHECK)
    out = io.StringIO()
    out.write("\ufeff")  # Excel reads UTF-8 only with a byte-order mark
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for item in meta["rows"]:
        case = item.get("case")
        if case:
            item["case"] = request.build_absolute_uri(reverse("case-detail", args=[case]))
        writer.writerow([safe_cell(item.get(column)) for column in CSV_COLUMNS])
    audit(
        "status_check.exported",
        object_type="status_check",
        object_id=token[:32],
        firm_id=membership.firm_id,
        actor=staff_actor(membership.user_id),
        details={"rows": len(meta["rows"]), "format": "csv"},
    )
    response = HttpResponse(out.getvalue(), content_type="text/csv; charset=utf-8")
    stamp = meta["at"][:16].replace(":", "").replace("T", "-")
    response["Content-Disposition"] = f'attachment; filename="uscis-status-{stamp}.csv"'
    response["Cache-Control"] = "no-store"
    return response


# --- streaming -------------------------------------------------------------------------

# Where the streamed parts go in the page, which is rendered once around them.
_ROWS = mark_safe("<!--casewatch:rows-->")
_SUMMARY = mark_safe("<!--casewatch:summary-->")


def _stream(
    request: HttpRequest, membership: Membership, inputs: list[str], asked: int
) -> StreamingHttpResponse:
    settings = uscis_settings()
    page = render(
        request,
        "intake/check_results.html",
        {
            "firm": membership.firm,
            "asked": asked,
            "sandbox": settings.uses_builtin_sandbox,
            "rows_marker": _ROWS,
            "summary_marker": _SUMMARY,
        },
    ).content.decode()
    head, rest = page.split(str(_ROWS), 1)
    middle, tail = rest.split(str(_SUMMARY), 1)
    check = _Check(membership, inputs)
    language = translation.get_language()
    # The rows are written after the middleware let go of the member's language and zone.
    zone = timezone.get_current_timezone()

    def chunks() -> Iterator[str]:
        with translation.override(language), timezone.override(zone):
            yield head
            yield from check.rows()
            yield middle
            yield check.summary(request, may(membership.role, Action.CHANGE_CASES))
            yield tail

    response = StreamingHttpResponse(chunks(), content_type="text/html; charset=utf-8")
    response["Cache-Control"] = "no-store"
    response["X-Accel-Buffering"] = "no"  # a proxy in front must pass each row on at once
    return response


@dataclass(frozen=True)
class _Arrived:
    result: CheckResult
    not_asked: str  # why USCIS was not asked, or ""


@dataclass(frozen=True)
class _Failed:
    reason: str


class _Check:
    """One check running in a thread while the page streams its answers."""

    def __init__(self, membership: Membership, inputs: list[str]) -> None:
        self.membership = membership
        self.firm: Firm = membership.firm
        self.inputs = inputs
        # Where each receipt first appears; where each input that is no receipt appears.
        self.first: dict[str, int] = {}
        self.invalid_at: list[int] = []
        for position, text in enumerate(inputs, 1):
            if _valid(text):
                self.first.setdefault(normalize_receipt(text), position)
            else:
                self.invalid_at.append(position)
        self.cases = known_cases(self.firm, list(self.first))
        self.events: queue.SimpleQueue[_Arrived | BudgetedResults | _Failed] = queue.SimpleQueue()
        self.stop = threading.Event()
        self.shown: list[Row] = []
        self.done: BudgetedResults | None = None
        self.failed = ""
        self.token = ""

    def rows(self) -> Iterator[str]:
        """A table row per answer, as each arrives; ends when the check has ended."""
        database = SharedConnection()
        runner = threading.Thread(target=self._run, args=(database,), name="status-check")
        with database:
            runner.start()
            try:
                while True:
                    event = self.events.get()
                    if isinstance(event, BudgetedResults):
                        self.done = event
                        break
                    if isinstance(event, _Failed):
                        self.failed = event.reason
                        break
                    row = self._row(event)
                    self.shown.append(row)
                    yield render_to_string("intake/check_row.html", {"row": row})
            finally:
                self.stop.set()  # the reader went away: nothing more is asked
                runner.join()
        if self.done is not None:
            self.token = self._keep(self.done)
            audit_check(
                self.done,
                firm_id=self.firm.pk,
                actor=staff_actor(self.membership.user_id),
                cases=len(self.cases),
                via="web",
            )

    def _run(self, database: SharedConnection) -> None:
        try:
            done = check_within_budget(
                self.inputs,
                on_result=lambda result, why: self.events.put(_Arrived(result, why)),
                stop=self.stop,
                database=database,
            )
            self.events.put(done)
        except Exception as exc:
            # Receipts are not written to the log; the kind of failure is enough to look into.
            log.warning("a bulk status check failed: %s", type(exc).__name__)
            self.events.put(_Failed(type(exc).__name__))

    def _row(self, arrived: _Arrived) -> Row:
        result = arrived.result
        outcome = result.outcome
        problem = outcome.error or ""
        if isinstance(outcome, InvalidInput):
            problem = "invalid_input"
            position = self.invalid_at.pop(0)
        else:
            position = self.first[result.receipt_number]
        if arrived.not_asked:
            problem = arrived.not_asked
        status = outcome.status if isinstance(outcome, Found) else None
        classification = result.classification
        return Row(
            position=position,
            input=result.input,
            receipt_number=result.receipt_number,
            ok=result.ok,
            form_type=status.form_type if status else "",
            title_en=status.title_en if status else "",
            title_es=status.title_es if status else "",
            category=classification.category if classification else "",
            urgency=classification.urgency if classification else "",
            problem=problem,
            case_id=None if problem == "invalid_input" else self.cases.get(result.receipt_number),
            reason=_not_a_receipt(result.input) if problem == "invalid_input" else "",
        )

    def _keep(self, done: BudgetedResults) -> str:
        """The results in input order, for the CSV, encrypted for a day."""
        rows = []
        for result in done.results:
            item = result_json(result, done.source)
            item["input"] = result.input
            why = done.why_not_asked(result)
            if why:
                item["error"], item["message"] = "not_asked", str(NOT_ASKED[why])
            valid = not isinstance(result.outcome, InvalidInput)
            item["case"] = self.cases.get(result.receipt_number) if valid else None
            rows.append(item)
        return held_files.hold(
            self.membership, CHECK, None, {"rows": rows, "at": timezone.now().isoformat()}
        )

    def summary(self, request: HttpRequest, may_add: bool) -> str:
        """What the check found, the CSV link, and the receipts that could become cases."""
        shown = self.shown
        addable = [
            row.receipt_number
            for row in sorted(shown, key=lambda row: row.position)
            if row.case_id is None and row.problem not in ("invalid_input", "invalid_receipt")
        ]
        return render_to_string(
            "intake/check_summary.html",
            {
                "failed": self.failed,
                "token": self.token,
                "read": sum(1 for row in shown if row.ok),
                "problems": sum(1 for row in shown if not row.ok),
                "repeats": len(self.inputs) - len(shown) if self.done else 0,
                "addable": addable,
                "may_add": may_add,
            },
            request=request,
        )
