"""classify(): any rendering or rewording of a USCIS title, English or Spanish, finds its meaning.

What a reworded title cannot clearly be pinned to one category is `unknown`, never a guess.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from casewatch.core.statuses import Classification, classify, clean_title, default_catalog

PLACEHOLDER = "CASE STATUS"
REFERENCE_TITLES = [
    line.rstrip("\n")
    for line in (Path(__file__).parent / "data" / "reference_titles.txt").open(encoding="utf-8")
    if line.strip() and not line.startswith("#") and line.strip() != PLACEHOLDER
]


def _well_formed(result: Classification) -> Classification:
    assert 0.0 <= result.confidence <= 1.0
    if result.category == "unknown":
        assert (result.status, result.urgency) == ("unknown", "review")
        assert result.confidence < default_catalog().threshold
    else:
        assert result.confidence >= default_catalog().threshold
        assert result.status in default_catalog().statuses
    return result


# How USCIS pages, APIs and scrapers render the same title.
RENDERINGS: dict[str, Callable[[str], str]] = {
    "UPPER CASE": str.upper,
    "lower case": str.lower,
    "leading and trailing spaces": lambda t: f"   {t}  ",
    "repeated inner spaces and tabs": lambda t: t.replace(" ", " \t  "),
    "line breaks": lambda t: "\n" + t.replace(" ", "\n") + "\n",
    "curly apostrophe": lambda t: t.replace("'", "’"),
    "&#39; apostrophe": lambda t: t.replace("'", "&#39;"),
    "&amp;#39; apostrophe": lambda t: t.replace("'", "&amp;#39;"),
    "trailing period": lambda t: f"{t}.",
    "paragraph tags": lambda t: f"<p>{t}</p>",
    "strong tags in a div": lambda t: f'<div class="rows"><strong>{t}</strong></div>',
    "&amp; for and": lambda t: re.sub(r"\band\b", "&amp;", t, flags=re.IGNORECASE),
    "&nbsp; between words": lambda t: t.replace(" ", "&nbsp;"),
    "escaped markup": lambda t: html.escape(f"<h1>{t}</h1>"),
    "trailing exclamation": lambda t: f"{t}!",
    "non-breaking spaces": lambda t: t.replace(" ", "\u00a0"),
}


@pytest.mark.parametrize("rendering", RENDERINGS)
@pytest.mark.parametrize("title", REFERENCE_TITLES)
def test_a_rendering_of_a_real_title_keeps_its_category(title: str, rendering: str) -> None:
    original = classify(title)
    assert _well_formed(classify(RENDERINGS[rendering](title))).category == original.category


# Rewordings a person, an older USCIS page or another tracker might use.
REWORDINGS = [
    ("Request For Evidence Was Sent", "evidence_requested"),
    ("RFE Was Mailed", "evidence_requested"),
    ("RFE Sent", "evidence_requested"),
    ("RFE Issued", "evidence_requested"),
    ("Request For Additional Evidence Was Mailed To Me", "evidence_requested"),
    ("Your Case Was Approved", "approved"),
    ("Case Approved", "approved"),
    ("Your Case Has Been Approved", "approved"),
    ("Case Was Aproved", "approved"),
    ("Card Mailed", "document_mailed"),
    ("Green Card Was Mailed To Me", "document_mailed"),
    ("Work Permit Was Mailed", "document_mailed"),
    ("Card Was Picked Up By USPS", "document_mailed"),
    ("Travel Document Mailed To Me", "document_mailed"),
    ("Biometrics appointment scheduled", "biometrics"),
    ("Biometric Appointment Was Scheduled", "biometrics"),
    ("Fingerprints were taken", "biometrics"),
    ("Fingerprint Fee Received", "biometrics"),
    ("Interview was rescheduled", "interview_scheduled"),
    ("Interview Scheduled", "interview_scheduled"),
    ("Interview Was Cancelled", "interview_scheduled"),
    ("Oath Ceremony Notice Mailed", "interview_scheduled"),
    ("Interview Was Completed", "interview_completed"),
    ("New card being produced", "document_production"),
    ("Card Is Being Produced", "document_production"),
    ("Reentry Permit Produced", "document_production"),
    ("Notice of intent to deny sent", "intent_to_deny"),
    ("NOID Was Sent", "intent_to_deny"),
    ("Case transferred to another office", "transferred"),
    ("Case Was Transferred", "transferred"),
    ("Case Was Moved To Another Office", "transferred"),
    ("Case Sent To Department Of State", "transferred"),
    ("Case Was Recieved", "received"),
    ("Case Received And Receipt Notice Mailed", "received"),
    ("Fee Was Waived", "received"),
    ("Your Case Was Denied", "denied"),
    ("Case Was Denid", "denied"),
    ("Case Rejected Because Form Was Not Signed", "rejected"),
    ("Case Rejected For Incorrect Fee", "rejected"),
    ("Card Was Delivered To Me", "document_delivered"),
    ("Card Delivered By Post Office", "document_delivered"),
    ("Card Was Returned To USCIS By The Post Office", "returned_mail"),
    ("Notice Returned As Undeliverable", "returned_mail"),
    ("Document Held For 180 Days", "returned_mail"),
    ("Document Destroyed", "returned_mail"),
    ("RFE Response Was Received", "evidence_received"),
    ("Correspondence Received", "evidence_received"),
    ("Case Is Still Pending", "in_review"),
    ("Case Was Re-Opened", "in_review"),
    ("Case Is Actively Being Reviewed By USCIS", "in_review"),
    ("Case Revoked", "revoked"),
    ("Withdrawal Acknowledgment Notice Sent", "withdrawn"),
    ("Case Closed", "closed"),
    ("Appeal Received", "appeal"),
    ("Appeal Was Denied", "appeal"),
    ("Case Was Sent To The AAO", "appeal"),
    ("Case On Hold", "on_hold"),
    ("Case Is On Hold Due To Litigation", "on_hold"),
    ("Name Was Changed", "admin"),
    ("Expedite Request Was Denied", "admin"),
    ("Premium Processing Request Received", "admin"),
    ("We Sent A Request For Evidence", "evidence_requested"),
    ("Request for Evidence Was Issued", "evidence_requested"),
    ("Requst for Evidence Was Sent", "evidence_requested"),
    ("Request For Initial Evidence Was Mailed To Me", "evidence_requested"),
    ("Case Was Approved And Decision Notice Was Mailed", "approved"),
    ("Case Was Approvd And My Decison Was Emailed", "approved"),
    ("Case Received And Receipt Notice Emailed", "received"),
    ("Your Card Was Mailed", "document_mailed"),
    ("Employment Authorization Card Was Mailed", "document_mailed"),
    ("Card Was Delivered", "document_delivered"),
    ("Card Was Deliverd To Me By The Post Ofice", "document_delivered"),
    ("Biometrics Appointment Has Been Scheduled", "biometrics"),
    ("Interview Has Been Scheduled", "interview_scheduled"),
    ("Intervew Was Schedulled", "interview_scheduled"),
    ("Oath Ceremony Scheduled", "interview_scheduled"),
    ("Interview Completed And Case Must Be Reviewed", "interview_completed"),
    ("Notice Of Intent To Revoke Was Mailed", "intent_to_deny"),
    ("Case Was Transferred To A New Office", "transferred"),
    ("Case Is Being Reviewed By USCIS", "in_review"),
    ("Case Is Actively Being Reviewed", "in_review"),
    ("Response to RFE Received", "evidence_received"),
    ("Case Was Denied And A Notice Was Mailed", "denied"),
    ("Case Rejected", "rejected"),
    ("Appeal Dismissed", "appeal"),
    ("Withdrawal Acknowledged", "withdrawn"),
    ("Expedite Request Was Approved", "admin"),
    ("Name Updated", "admin"),
    ("Card Returned To USCIS", "returned_mail"),
]


@pytest.mark.parametrize(("title", "category"), REWORDINGS)
def test_a_rewording_that_clearly_means_one_status_lands_in_its_category(
    title: str, category: str
) -> None:
    assert _well_formed(classify(title)).category == category


@pytest.mark.parametrize("key", sorted(default_catalog().statuses))
def test_every_spanish_title_classifies_to_its_own_status(key: str) -> None:
    result = _well_formed(classify(default_catalog().get(key).title_es))
    assert (result.status, result.confidence) == (key, 1.0)


SPANISH = [
    ("Su caso fue aprobado", "approved"),
    ("Caso aprobado", "approved"),
    ("Se aprobó su caso", "approved"),
    ("Caso recibido", "received"),
    ("Su caso fue recibido", "received"),
    ("Se envió una solicitud de evidencia", "evidence_requested"),
    ("Solicitud de evidencia adicional enviada", "evidence_requested"),
    ("Se recibió la respuesta a la solicitud de evidencia", "evidence_received"),
    ("Tarjeta entregada por el servicio postal", "document_delivered"),
    ("Su tarjeta fue entregada", "document_delivered"),
    ("Tarjeta enviada por correo", "document_mailed"),
    ("Se envió la tarjeta por correo", "document_mailed"),
    ("Se está produciendo la nueva tarjeta", "document_production"),
    ("Nueva tarjeta en producción", "document_production"),
    ("Cita de biométricos programada", "biometrics"),
    ("Se tomaron las huellas digitales", "biometrics"),
    ("Se programó la entrevista", "interview_scheduled"),
    ("Entrevista reprogramada", "interview_scheduled"),
    ("Entrevista completada", "interview_completed"),
    ("Caso transferido a otra oficina", "transferred"),
    ("Su caso fue denegado", "denied"),
    ("Caso fue rechazado", "rejected"),
    ("Aviso de intención de denegar", "intent_to_deny"),
    ("Tarjeta devuelta a USCIS", "returned_mail"),
    ("Tarjeta destruida", "returned_mail"),
    ("Aviso de revocación enviado", "revoked"),
    ("Caso reabierto", "in_review"),
    ("Caso en espera", "on_hold"),
    ("Caso cerrado", "closed"),
    ("Apelación desestimada", "appeal"),
    ("Nombre actualizado", "admin"),
    ("Se recibió la solicitud de trámite acelerado", "admin"),
    ("Fue Aprobado Su Caso", "approved"),
    ("Caso Fue Recibido y Se Envió Aviso de Recibo", "received"),
    ("Solicitud de evidencia enviada", "evidence_requested"),
    ("Se Envió Solicitud de Evidencia Adicional", "evidence_requested"),
    ("Se programó una cita de biométricos", "biometrics"),
    ("Se tomaron las huellas", "biometrics"),
    ("Entrevista programada", "interview_scheduled"),
    ("Caso transferido a una nueva oficina", "transferred"),
    ("Nueva tarjeta está siendo producida", "document_production"),
    ("Su tarjeta fue enviada por correo", "document_mailed"),
    ("Aviso de intención de denegar enviado", "intent_to_deny"),
    ("Caso fue denegado", "denied"),
    ("Caso rechazado", "rejected"),
    ("Caso está siendo revisado activamente", "in_review"),
]


@pytest.mark.parametrize(("title", "category"), SPANISH)
def test_a_spanish_wording_lands_in_the_same_category_as_english(title: str, category: str) -> None:
    assert _well_formed(classify(title)).category == category


NONSENSE = [
    PLACEHOLDER,
    "",
    "   ",
    "lorem ipsum dolor",
    "Pizza Was Delivered",
    "Pizza Was Approved",
    "asdfgh qwerty",
    "The weather is nice today",
    "Your Order Has Shipped",
    "Hola mundo",
    "Case",
    "Was Sent",
    "Card Was",
    "Se envió",
    "<p></p>",
]


@pytest.mark.parametrize("title", NONSENSE)
def test_nonsense_is_unknown_for_a_person_to_review(title: str) -> None:
    result = _well_formed(classify(title))
    assert (result.status, result.category, result.urgency) == ("unknown", "unknown", "review")
    assert result.input == title


# Wordings that could mean statuses of different categories: no guess.
AMBIGUOUS = [
    "Notice Was Mailed",  # which notice? approval, denial, RFE, receipt...
    "Notice Was Sent",
    "Case Was Updated",  # fingerprints taken, no-show, name, birth date...
    "Case Was Sent",  # to the State Department, the AAO, the EOIR...
    "Request Was Received",  # expedite, premium processing, reschedule, appeal...
    "Request Was Approved",  # expedite or duplicate card
    "Fee Was Received",  # fingerprint fee or premium processing fee
    "Case Was Approved And Then Denied",
]


@pytest.mark.parametrize("title", AMBIGUOUS)
def test_a_wording_that_could_mean_two_categories_is_unknown(title: str) -> None:
    assert _well_formed(classify(title)).category == "unknown"


def test_the_answer_names_the_canonical_status_in_both_languages() -> None:
    result = classify("request for evidence was mailed")
    status = default_catalog().get(result.status)
    assert (result.category, result.urgency) == ("evidence_requested", "action")
    assert (result.title_en, result.title_es) == (status.title_en, status.title_es)
    assert result.as_dict()["status"] == result.status


def test_cleaning_ignores_what_the_spec_says_to_ignore() -> None:
    assert clean_title("  <p>Response To USCIS&#39; Request</p>. ") == "response to uscis request"
    assert clean_title("Response To USCIS’ Request") == "response to uscis request"
    assert clean_title("Solicitud de Evidencia Adicional Fue Enviada") == (
        "solicitud de evidencia adicional fue enviada"
    )


@given(st.text(max_size=200))
def test_any_text_gets_a_well_formed_answer(text: str) -> None:
    _well_formed(classify(text))
