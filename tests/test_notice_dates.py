"""Reading the dates in USCIS status descriptions, and the deadlines they set.

The texts are USCIS's own templates (tests/data/notice_dates_reference_templates.json,
copied from the shared reference) and the sandbox's English and Spanish templates,
filled in with generated dates exactly as the sandbox renders them.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from datetime import date, time, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from casewatch.core.notice_dates import (
    DEADLINE_RULES,
    NOID_RESPONSE_DAYS,
    RFE_RESPONSE_DAYS,
    AppointmentTime,
    Deadline,
    appointment_date,
    notice_date,
    response_deadline,
)
from casewatch.core.statuses import CATEGORIES, classify
from casewatch.uscis.sandbox.texts import date_en, date_es, render_step, texts

DATA = Path(__file__).parent / "data"
REFERENCE: dict[str, str] = json.loads(
    (DATA / "notice_dates_reference_templates.json").read_text(encoding="utf-8")
)["templates"]
SANDBOX = texts().templates
FORMS = sorted(texts().forms)
LOCATIONS = texts().locations

# Values for the reference templates' placeholders that are not dates.
REFERENCE_FILLERS = {
    "form_long_name": "Form I-485, Application to Register Permanent Residence or Adjust Status",
    "form_long_name_2": "Form I-90, Application to Replace Permanent Resident Card",
    "form_long_name2": "Form I-730, Refugee/Asylee Relative Petition",
    "long_form_name": "Form I-131, Application for Travel Document",
    "receipt_number": "IOE0912345678",
    "location_name": "Nebraska Service Center",
    "tracking_number": "9405511899223197428490",
    "phone_number": "1-800-375-5283",
    "phrasing_1": "reopened your",
    "phrasing_2": "and resumed processing your case",
    "send_phrase": "resend the card to you",
    "section_path": "Quick Tools Tracking",
    "inconsistent_tabs": " www.uscis.gov/e-request ",
    "more_inconsistent_tabs": " The tracking number",
    "truncated_message": "go to www.uscis.gov/addresschange.",
}

# Dates casewatch could ever meet; the reader refuses years outside 1900-2199 as typos.
any_day = st.dates(min_value=date(1900, 1, 1), max_value=date(2199, 12, 31))
recent_day = st.dates(min_value=date(2000, 1, 1), max_value=date(2040, 12, 31))
# Per-template tests run once per template: a few dates each add up to thousands.
few = settings(max_examples=10, suppress_health_check=[HealthCheck.too_slow], deadline=None)


def fill_reference(template: str, on: date, deadline: date, held_until: date) -> str:
    values = {
        **REFERENCE_FILLERS,
        "date": date_en(on),
        "notice_deadline": date_en(deadline),
        "hold_deadline": date_en(held_until),
    }
    return template.format(**values)


def render(title: str, lang: str, on: date, deadline: date, appointment: date, form: str) -> str:
    """The sandbox's own description for `title`, as its server would show it."""
    step = render_step(
        title,
        form_type=form,
        receipt_number="EAC9999103403",
        on=on,
        notice_deadline=deadline,
        appointment=appointment,
        location=LOCATIONS[0],
    )
    return step.description_en if lang == "en" else step.description_es


def distinct_days(count: int) -> st.SearchStrategy[list[date]]:
    return st.lists(recent_day, min_size=count, max_size=count, unique=True)


SANDBOX_CASES = [(title, lang) for title in SANDBOX for lang in ("en", "es")]


# --- Every template, filled in, gives back its notice date. ----------------------


@pytest.mark.parametrize("title", sorted(REFERENCE))
@few
@given(days=distinct_days(3))
def test_every_reference_template_gives_back_its_notice_date_and_never_another(title, days):
    on, deadline, held_until = days
    text = fill_reference(REFERENCE[title], on, deadline, held_until)
    expected = on if "{date}" in REFERENCE[title] else None
    assert notice_date(text) == expected


@pytest.mark.parametrize("title", sorted(REFERENCE))
@few
@given(days=distinct_days(3))
def test_no_reference_template_schedules_an_appointment(title, days):
    assert appointment_date(fill_reference(REFERENCE[title], *days)) is None


@pytest.mark.parametrize(("title", "lang"), SANDBOX_CASES)
@few
@given(days=distinct_days(3), form=st.sampled_from(FORMS))
def test_every_sandbox_template_gives_back_its_notice_date(title, lang, days, form):
    on, deadline, appointment = days
    text = render(title, lang, on, deadline, appointment, form)
    assert notice_date(text) == (on if "{date}" in SANDBOX[title][lang] else None)


@pytest.mark.parametrize(("title", "lang"), SANDBOX_CASES)
@few
@given(days=distinct_days(3), form=st.sampled_from(FORMS))
def test_sandbox_appointment_templates_give_back_the_appointment_and_never_the_notice_deadline(
    title, lang, days, form
):
    on, deadline, appointment = days
    found = appointment_date(render(title, lang, on, deadline, appointment, form))
    if "{appointment_date}" in SANDBOX[title][lang]:
        assert found == AppointmentTime(appointment, None)
    else:
        assert found is None


def test_the_api_documentation_examples_read_as_september_5_2023():
    assert notice_date("On September 5, 2023, we approved your Form I-130, …") == date(2023, 9, 5)
    spanish = "El 05 de Septiembre de 2023, aprobamos su Formulario I-130, …"
    assert notice_date(spanish) == date(2023, 9, 5)


# --- Markup, spacing and spelling do not matter. ---------------------------------


HTML_VARIANTS: dict[str, Callable[[str], str]] = {
    "paragraph": lambda text: f"<p>{text}</p>",
    "links": lambda text: text.replace(
        "www.uscis.gov/e-request",
        '<a href="https://www.uscis.gov/e-request" target="_blank">www.uscis.gov/e-request</a>',
    ).replace(
        "www.uscis.gov/addresschange",
        "<a href='https://www.uscis.gov/addresschange'>www.uscis.gov/addresschange</a>",
    ),
    "escaped": html.escape,
    "escaped twice": lambda text: html.escape(html.escape(text)),
    "non-breaking spaces": lambda text: text.replace(" ", "&nbsp;"),
    "numeric entities": lambda text: text.replace(",", "&#44;").replace(" ", "&#160;"),
    "line breaks": lambda text: "\n  <p>\n" + text.replace(", ", ",\n\t  ").replace(". ", ".<br/>"),
    "unicode spaces": lambda text: text.replace(" ", "\u00a0", 3).replace(", ", " ,  "),
    "bold": lambda text: f"<div class='status'><p><strong>{text[:2]}</strong>{text[2:]}</p></div>",
}

DEADLINE_TITLES = [
    "Request for Evidence Was Sent",
    "Notice Of Intent To Deny Was Sent",
    "Interview Was Scheduled",
    "Interview Was Rescheduled",
    "Biometrics Appointment Was Scheduled",
    "Oath Ceremony Notice Was Mailed",
    "Case Was Approved",
]


@pytest.mark.parametrize("title", DEADLINE_TITLES)
@pytest.mark.parametrize("lang", ["en", "es"])
@settings(max_examples=40, deadline=None)
@given(days=distinct_days(3), variant=st.sampled_from(sorted(HTML_VARIANTS)))
def test_html_wrapped_descriptions_read_the_same(title, lang, days, variant):
    on, deadline, appointment = days
    plain = render(title, lang, on, deadline, appointment, "I-485")
    wrapped = HTML_VARIANTS[variant](plain)
    assert notice_date(wrapped) == notice_date(plain) == on
    assert appointment_date(wrapped) == appointment_date(plain)


def test_markup_inside_the_date_is_tolerated():
    text = "<p>On <b>Sept.</b> 5<sup>th</sup> , <span>2023</span>, we sent you a notice.</p>"
    assert notice_date(text) == date(2023, 9, 5)


# --- Every supported format reads back as the date it was written from. ---------

MONTHS_EN = [
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
]  # fmt: skip
ABBREVIATIONS_EN = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sept", "Oct", "Nov", "Dec",
]  # fmt: skip
WEEKDAYS_EN = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS_ES = [
    "enero", "febrero", "marzo", "abril", "mayo", "junio",
    "julio", "agosto", "septiembre", "octubre", "noviembre", "diciembre",
]  # fmt: skip
WEEKDAYS_ES = ["lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo"]


def ordinal(n: int) -> str:
    suffix = "th" if 11 <= n % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


ENGLISH_FORMATS: dict[str, Callable[[date], str]] = {
    "sandbox": date_en,
    "upper case": lambda d: date_en(d).upper(),
    "lower case": lambda d: date_en(d).lower(),
    "abbreviated": lambda d: f"{ABBREVIATIONS_EN[d.month - 1]} {d.day}, {d.year}",
    "abbreviated with a dot": lambda d: f"{ABBREVIATIONS_EN[d.month - 1]}. {d.day:02d}, {d.year}",
    "three letters, no comma": lambda d: f"{MONTHS_EN[d.month - 1][:3]} {d.day} {d.year}",
    "ordinal": lambda d: f"{MONTHS_EN[d.month - 1]} {ordinal(d.day)}, {d.year}",
    "day first": lambda d: f"{d.day} {MONTHS_EN[d.month - 1]} {d.year}",
    "the day of the month": lambda d: f"the {ordinal(d.day)} of {MONTHS_EN[d.month - 1]}, {d.year}",
    "with weekday": lambda d: f"{WEEKDAYS_EN[d.weekday()]}, {date_en(d)}",
    "US numeric": lambda d: f"{d:%m/%d}/{d.year}",
    "US numeric unpadded": lambda d: f"{d.month}/{d.day}/{d.year}",
    "US numeric with dashes": lambda d: f"{d:%m-%d}-{d.year}",
    "ISO": date.isoformat,
}
SPANISH_FORMATS: dict[str, Callable[[date], str]] = {
    "sandbox": date_es,
    "upper case": lambda d: date_es(d).upper(),
    "lower case, unpadded": lambda d: f"{d.day} de {MONTHS_ES[d.month - 1]} de {d.year}",
    "del year": lambda d: f"{d.day} de {MONTHS_ES[d.month - 1]} del {d.year}",
    "setiembre": lambda d: date_es(d).replace("Septiembre", "Setiembre"),
    "first of the month": lambda d: (
        f"{'1.º' if d.day == 1 else d.day} de {MONTHS_ES[d.month - 1]} de {d.year}"
    ),
    "with weekday": lambda d: f"{WEEKDAYS_ES[d.weekday()]} {date_es(d)}",
    "with weekday and comma": lambda d: f"{WEEKDAYS_ES[d.weekday()].upper()}, {date_es(d)}",
    "ISO": date.isoformat,
}


@given(
    day=any_day, fmt=st.sampled_from(sorted(ENGLISH_FORMATS)), lead=st.sampled_from(["On", "As of"])
)
def test_any_date_in_any_english_format_reads_back_as_itself(day, fmt, lead):
    text = f"{lead} {ENGLISH_FORMATS[fmt](day)}, we approved your Form I-130, Receipt Number X."
    assert notice_date(text) == day


@given(
    day=any_day,
    fmt=st.sampled_from(sorted(SPANISH_FORMATS)),
    lead=st.sampled_from(["El", "A partir del"]),
)
def test_any_date_in_any_spanish_format_reads_back_as_itself(day, fmt, lead):
    text = f"{lead} {SPANISH_FORMATS[fmt](day)}, aprobamos su Formulario I-130."
    assert notice_date(text) == day


@given(day=recent_day, fmt=st.sampled_from(sorted(ENGLISH_FORMATS)))
def test_any_appointment_date_in_any_english_format_reads_back_as_itself(day, fmt):
    text = f"We scheduled you for a biometrics appointment on {ENGLISH_FORMATS[fmt](day)}."
    assert appointment_date(text) == AppointmentTime(day)


@given(day=recent_day, fmt=st.sampled_from(sorted(SPANISH_FORMATS)))
def test_any_appointment_date_in_any_spanish_format_reads_back_as_itself(day, fmt):
    text = f"Su entrevista está programada para el {SPANISH_FORMATS[fmt](day)}."
    assert appointment_date(text) == AppointmentTime(day)


@pytest.mark.parametrize(
    ("written", "month"),
    [
        *[(name, number) for number, name in enumerate(MONTHS_ES, 1)],
        *[(name.upper(), number) for number, name in enumerate(MONTHS_ES, 1)],
        *[(name.capitalize(), number) for number, name in enumerate(MONTHS_ES, 1)],
        ("Setiembre", 9),
        ("setiembre", 9),
        ("Septiémbre", 9),
        ("sept.", 9),
        ("ene.", 1),
        ("abr", 4),
        ("ago.", 8),
        ("dic", 12),
    ],
)
def test_spanish_month_names_are_read_in_any_case_and_with_or_without_accents(written, month):
    assert notice_date(f"El 7 de {written} de 2024, recibimos su caso.") == date(2024, month, 7)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("El miércoles 6 de septiembre de 2023, recibimos su caso.", date(2023, 9, 6)),
        ("El miercoles, 6 de septiembre de 2023, recibimos su caso.", date(2023, 9, 6)),
        ("El 1º de enero de 2024, recibimos su caso.", date(2024, 1, 1)),
        ("El 1ro de enero de 2024, recibimos su caso.", date(2024, 1, 1)),
        ("A partir de 5 de marzo de 2024, estamos revisando su caso.", date(2024, 3, 5)),
        ("On Wed., Sept. 6th, 2023, we received your case.", date(2023, 9, 6)),
        ("ON SEPTEMBER 6, 2023, WE RECEIVED YOUR CASE.", date(2023, 9, 6)),
        ("  On   September\n6 ,2023 we received your case.", date(2023, 9, 6)),
        ("On 2023-09-06T14:28:46, we received your case.", date(2023, 9, 6)),
        ("On 09-06-2023, we received your case.", date(2023, 9, 6)),
    ],
)
def test_other_ways_of_writing_the_date_are_read(text, expected):
    assert notice_date(text) == expected


# --- When unsure, no date. --------------------------------------------------------


@given(
    text=st.text(
        alphabet=st.characters(blacklist_categories=("Nd", "No", "Nl", "Cs")), max_size=300
    )
)
def test_text_without_digits_has_no_date(text):
    assert notice_date(text) is None
    assert appointment_date(text) is None


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "<p></p>",
        "Case Was Approved",
        "We approved your Form I-130, Receipt Number EAC9999103403, and emailed you a notice.",
        "Please call the Burlington Finance Center at 1-802-288-7600.",
        "At this time USCIS cannot provide you with information for your case.",
        "We will hold your document for 180 days. Form I-129CWR, Section 322, I-765.",
    ],
)
def test_descriptions_without_dates_give_none(text):
    assert notice_date(text) is None
    assert appointment_date(text) is None


@pytest.mark.parametrize(
    "text",
    [
        # only the "If you do not receive … by" date
        "We approved your case. If you do not receive your notice by October 5, 2023, call us.",
        "Si no recibe su aviso antes del 5 de octubre de 2023, llámenos.",
        # a date not said to be the notice's
        "Your interview is scheduled for January 5, 2024. Please bring your documents.",
        "Your case was reviewed on January 5, 2024.",
        # impossible, typo or contradicting dates after "On"
        "On February 30, 2023, we approved your case.",
        "On September 5, 1023, we approved your case.",
        "On Monday, September 5, 2023, we approved your case.",  # it was a Tuesday
        "On 13/25/2023, we approved your case.",
        "On 25/09/2023, we approved your case.",  # not US order
        # day and month could be swapped in a Spanish numeric date
        "El 05/09/2023, aprobamos su caso.",
        # a leading date that cannot be read does not fall back to a later one
        "On February 30, 2023, we sent you a notice dated September 5, 2023.",
    ],
)
def test_dates_that_are_not_clearly_the_notice_date_give_none(text):
    assert notice_date(text) is None


@given(day=recent_day)
def test_a_spanish_numeric_date_is_read_only_when_day_and_month_cannot_be_swapped(day):
    text = f"El {day.day:02d}/{day.month:02d}/{day.year}, aprobamos su caso."
    unambiguous = day.day > 12 or day.day == day.month
    assert notice_date(text) == (day if unambiguous else None)


@pytest.mark.parametrize(
    "text",
    [
        "We approved your case and mailed you an approval notice on September 5, 2023.",
        "We sent you a request for evidence on September 5, 2023. Please respond.",
        "Please respond to our request for evidence dated September 5, 2023.",
        "Notice date: 09/05/2023. Please follow the instructions.",
        "Your notice was mailed on Sept. 5, 2023.",
        "Le enviamos por correo un aviso el 5 de septiembre de 2023.",
        "Responda a nuestro aviso con fecha del 5 de septiembre de 2023.",
    ],
)
def test_without_a_leading_date_the_first_date_counts_when_it_is_called_the_notices(text):
    assert notice_date(text) == date(2023, 9, 5)


# --- Appointments: the day, the time, and only the appointment. -----------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "On December 1, 2023, we scheduled an interview for your Form N-400, Application"
            " for Naturalization, Receipt Number IOE0912345678, on January 5, 2024, at 10:00 AM.",
            AppointmentTime(date(2024, 1, 5), time(10, 0)),
        ),
        (
            "We scheduled you for a biometrics appointment on Monday, January 8, 2024 at 2:30 p.m."
            " at our Chicago ASC.",
            AppointmentTime(date(2024, 1, 8), time(14, 30)),
        ),
        (
            "Your biometrics appointment is at 8 AM on January 8, 2024.",
            AppointmentTime(date(2024, 1, 8), time(8, 0)),
        ),
        (
            "Your oath ceremony is scheduled for 01/19/2024 at 12:00 PM.",
            AppointmentTime(date(2024, 1, 19), time(12, 0)),
        ),
        (
            "El 1 de diciembre de 2023, programamos una entrevista para su caso el 5 de enero de"
            " 2024 a las 10:00 en nuestra oficina.",
            AppointmentTime(date(2024, 1, 5), time(10, 0)),
        ),
        (
            "Su cita para la toma de datos biométricos está programada para el viernes 5 de enero"
            " de 2024 a las 3:15 p. m.",
            AppointmentTime(date(2024, 1, 5), time(15, 15)),
        ),
        (
            "Su ceremonia de juramento está programada para el 5 de enero de 2024"
            " a las 14:00 horas.",
            AppointmentTime(date(2024, 1, 5), time(14, 0)),
        ),
        (
            "Su entrevista ahora está programada para el 5 de enero de 2024"
            " a las 9:00 de la mañana.",
            AppointmentTime(date(2024, 1, 5), time(9, 0)),
        ),
        (  # 3:00 could be 3 AM or 3 PM: the day is certain, the time is not
            "Your interview is now scheduled for January 5, 2024, at 3:00.",
            AppointmentTime(date(2024, 1, 5), None),
        ),
        (  # the same appointment said twice, once with its time
            "We scheduled an interview for your case on January 5, 2024. Your interview is"
            " scheduled for January 5, 2024, at 9:30 AM.",
            AppointmentTime(date(2024, 1, 5), time(9, 30)),
        ),
    ],
)
def test_the_appointment_date_and_time_are_read(text, expected):
    assert appointment_date(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "On December 1, 2023, we cancelled the interview scheduled for January 5, 2024.",
        "Your interview was scheduled for January 5, 2024, but it was cancelled.",
        "Your biometrics appointment on January 5, 2024 was missed; no one came.",
        "We received your request to reschedule your biometrics appointment for January 5, 2024.",
        "El 1 de diciembre de 2023, cancelamos la entrevista programada para el"
        " 5 de enero de 2024.",
        # two different appointments: which one is meant is not clear
        "Your interview is scheduled for January 5, 2024. Your interview is scheduled for"
        " January 12, 2024.",
        # an appointment date that cannot be read
        "Your interview is scheduled for February 30, 2024.",
    ],
)
def test_appointments_that_will_not_happen_as_written_give_none(text):
    assert appointment_date(text) is None


@given(
    day=recent_day,
    clock=st.times().map(lambda t: t.replace(second=0, microsecond=0)),
    style=st.sampled_from(["AM", "am", "a.m.", "A.M."]),
)
def test_any_twelve_hour_clock_time_reads_back_as_itself(day, clock, style):
    hour = clock.hour % 12 or 12
    meridiem = style if clock.hour < 12 else style.replace("a", "p").replace("A", "P")
    text = f"Your interview is scheduled for {date_en(day)}, at {hour}:{clock:%M} {meridiem}."
    assert appointment_date(text) == AppointmentTime(day, clock)


@given(day=recent_day, clock=st.times().map(lambda t: t.replace(second=0, microsecond=0)))
def test_a_24_hour_spanish_time_reads_back_unless_it_could_be_am_or_pm(day, clock):
    text = f"Su entrevista está programada para el {date_es(day)} a las {clock:%H:%M}."
    expected = None if 1 <= clock.hour <= 6 else clock
    assert appointment_date(text) == AppointmentTime(day, expected)


# --- Deadlines. ---------------------------------------------------------------------


def test_the_response_periods_are_84_and_30_days_plus_3_for_mailing():
    assert RFE_RESPONSE_DAYS == 87
    assert NOID_RESPONSE_DAYS == 33
    assert DEADLINE_RULES["evidence_requested"].days == RFE_RESPONSE_DAYS
    assert DEADLINE_RULES["intent_to_deny"].days == NOID_RESPONSE_DAYS


def test_every_rule_is_for_a_real_category():
    assert set(DEADLINE_RULES) <= set(CATEGORIES)


@pytest.mark.parametrize(
    "title",
    [
        "Request for Evidence Was Sent",
        "Request for Additional Evidence Was Sent",
        "Request for Initial Evidence Was Sent",
    ],
)
@pytest.mark.parametrize("lang", ["en", "es"])
@few
@given(days=distinct_days(3))
def test_an_rfe_response_is_due_87_days_after_its_notice_date(title, lang, days):
    on, deadline, appointment = days
    text = render(title, lang, on, deadline, appointment, "I-485")
    found = response_deadline("evidence_requested", text, received_on=on + timedelta(days=4))
    assert found == Deadline(
        kind="rfe_response",
        due_on=on + timedelta(days=87),
        due_at=None,
        basis=on,
        basis_text=f"RFE notice dated {on.isoformat()} + 87 days",
    )


@pytest.mark.parametrize(
    "title", ["Notice Of Intent To Deny Was Sent", "CWR Notice of Intent to Revoke Sent"]
)
@pytest.mark.parametrize("lang", ["en", "es"])
@few
@given(days=distinct_days(3))
def test_a_noid_response_is_due_33_days_after_its_notice_date(title, lang, days):
    on, deadline, appointment = days
    found = response_deadline(
        "intent_to_deny", render(title, lang, on, deadline, appointment, "I-485")
    )
    assert found is not None
    assert (found.kind, found.due_on, found.basis) == ("noid_response", on + timedelta(33), on)
    assert found.basis_text == f"Notice of intent dated {on.isoformat()} + 33 days"


@pytest.mark.parametrize(
    ("title", "what"),
    [
        ("Interview Was Scheduled", "interview"),
        ("Interview Was Rescheduled", "interview"),
        ("Oath Ceremony Notice Was Mailed", "oath ceremony"),
    ],
)
@pytest.mark.parametrize("lang", ["en", "es"])
@few
@given(days=distinct_days(3))
def test_an_interview_is_due_on_its_own_date(title, what, lang, days):
    on, deadline, appointment = days
    text = render(title, lang, on, deadline, appointment, "N-400")
    assert response_deadline("interview_scheduled", text, received_on=on) == Deadline(
        kind="interview",
        due_on=appointment,
        due_at=None,
        basis=appointment,
        basis_text=f"{what} on {appointment.isoformat()}",
    )


@pytest.mark.parametrize("lang", ["en", "es"])
@few
@given(days=distinct_days(3))
def test_a_biometrics_appointment_is_due_on_its_own_date(lang, days):
    on, deadline, appointment = days
    text = render("Biometrics Appointment Was Scheduled", lang, on, deadline, appointment, "I-485")
    found = response_deadline("biometrics", text, received_on=on)
    assert found is not None
    assert (found.kind, found.due_on, found.due_at, found.basis) == (
        "biometrics",
        appointment,
        None,
        appointment,
    )


def test_an_appointment_deadline_keeps_the_time_of_day():
    text = "We scheduled you for a biometrics appointment on January 8, 2024, at 9:00 AM."
    found = response_deadline("biometrics", text)
    assert found is not None
    assert (found.due_on, found.due_at) == (date(2024, 1, 8), time(9, 0))
    assert found.basis_text == "biometrics appointment on 2024-01-08 at 09:00"


@pytest.mark.parametrize("lang", ["en", "es"])
@pytest.mark.parametrize(
    "title",
    [
        "Fingerprint Fee Was Received",
        "Case Was Updated To Show Fingerprints Were Taken",
        "Case Was Updated To Show That No One Appeared for In-Person Processing",
        "Request To Reschedule My Appointment Was Received",
        "Interview Cancelled",
    ],
)
def test_statuses_without_an_appointment_set_no_appointment_deadline(title, lang):
    text = render(title, lang, date(2023, 9, 5), date(2023, 10, 5), date(2024, 1, 5), "I-485")
    category = classify(title).category
    assert category in ("biometrics", "interview_scheduled")
    assert response_deadline(category, text, received_on=date(2023, 9, 6)) is None


def test_a_reference_biometrics_notice_without_the_appointment_date_sets_no_deadline():
    text = fill_reference(
        REFERENCE["Biometrics Appointment Was Scheduled"],
        date(2023, 9, 5),
        date(2023, 10, 5),
        date(2024, 3, 1),
    )
    assert response_deadline("biometrics", text, received_on=date(2023, 9, 6)) is None


def test_an_interview_deadline_is_not_taken_from_a_biometrics_appointment():
    text = "We scheduled you for a biometrics appointment on January 8, 2024."
    assert response_deadline("interview_scheduled", text) is None
    assert response_deadline("biometrics", text) is not None


@pytest.mark.parametrize(
    ("category", "kind", "days", "label"),
    [
        ("evidence_requested", "rfe_response", 87, "RFE notice"),
        ("intent_to_deny", "noid_response", 33, "Notice of intent"),
    ],
)
@pytest.mark.parametrize(
    "text",
    [
        "",
        "We sent you a request for evidence. Please follow the instructions in the notice.",
        "<p>Le enviamos un aviso.</p>",
        "El 05/09/2023, le enviamos un aviso.",  # 5 September or 9 May: not read
    ],
)
def test_a_response_deadline_without_a_notice_date_counts_from_when_the_status_was_first_seen(
    category, kind, days, label, text
):
    seen = date(2023, 9, 7)
    assert response_deadline(category, text, received_on=seen) == Deadline(
        kind=kind,
        due_on=seen + timedelta(days=days),
        due_at=None,
        basis=seen,
        basis_text=f"{label} date not in the description; counted from 2023-09-07, "
        f"when the status was first seen, + {days} days",
    )
    assert response_deadline(category, text) is None


def test_a_readable_notice_date_wins_over_the_day_the_status_was_seen():
    text = "On September 5, 2023, we sent a request for evidence for your Form I-485."
    found = response_deadline("evidence_requested", text, received_on=date(2023, 9, 20))
    assert found is not None
    assert (found.basis, found.due_on) == (date(2023, 9, 5), date(2023, 12, 1))


@pytest.mark.parametrize("category", ["interview_scheduled", "biometrics"])
def test_an_appointment_is_never_guessed_from_the_day_the_status_was_seen(category):
    assert response_deadline(category, "", received_on=date(2023, 9, 7)) is None


@pytest.mark.parametrize("category", sorted(set(CATEGORIES) - set(DEADLINE_RULES)))
def test_other_categories_set_no_deadline(category):
    text = render(
        "Case Was Approved", "en", date(2023, 9, 5), date(2023, 10, 5), date(2024, 1, 5), "I-130"
    )
    assert response_deadline(category, text, received_on=date(2023, 9, 6)) is None


@pytest.mark.parametrize(("title", "lang"), SANDBOX_CASES)
def test_every_sandbox_status_that_calls_for_action_by_a_date_gets_that_date(title, lang):
    on, deadline, appointment = date(2023, 9, 5), date(2023, 10, 5), date(2024, 1, 5)
    text = render(title, lang, on, deadline, appointment, "I-130")
    category = classify(title).category
    rule = DEADLINE_RULES.get(category)
    found = response_deadline(category, text)
    if rule is None:
        assert found is None
    elif rule.counted_from == "notice":
        assert found is not None
        assert found.due_on == on + timedelta(days=rule.days)
    elif "{appointment_date}" in SANDBOX[title][lang]:
        assert found is not None
        assert found.due_on == appointment
    else:
        assert found is None
