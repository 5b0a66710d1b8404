"""What the import and the receipt parser say about a file, a row or a receipt reaches a
Spanish-speaking member in Spanish (the import wizard, its result, the pasted list, the
bulk status check), while the command line and `casewatch import --json` keep saying it
in the English they always did. The core stays free of Django: it says each message as
an id and values (casewatch.core.wording); the web layer words it (casewatch.web.labels).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client as Browser
from django.utils import translation

from casewatch.accounts.models import Firm, Membership, Role
from casewatch.cases import sheet
from casewatch.core import receipts
from casewatch.core.wording import Wording, placeholders
from casewatch.web.labels import WORDINGS, in_words
from tests.environment import sign_in
from tests.test_cli import casewatch
from tests.test_i18n import SPANISH, _english_left

SHEET = (
    "Receipt Number,Form,Client Name,E-mail,Phone,Language\n"
    "EAC9999103403,I-485,Test Client Uno,uno@example.com,(202) 555-0142,Spanish\n"
    "EAC12345,I-130,Test Client Dos,,,\n"
    "LIN9999106498,Z-999,Test Client Tres,not-an-email,12,Klingon\n"
    "eac-99-991-03403,I-485,Test Client Uno,,,\n"
)
# What the command line says about that sheet, word for word.
ENGLISH = {
    (3, "receipt_number"): (
        "a receipt number has 13 characters (3 letters and 10 digits); 'EAC12345' has 8; "
        "row skipped"
    ),
    (4, "form_type"): (
        "not a USCIS form number casewatch recognizes (like I-485 or N-400); "
        "the case is tracked without it"
    ),
    (4, "client_language"): (
        "not a language casewatch knows (write a code like es or a name like Spanish); "
        "the case is tracked without it"
    ),
    (4, "client_phone"): "not a valid phone number (too short); the case is tracked without it",
    (5, "receipt_number"): (
        "receipt EAC9999103403 already appears on line 2; imported once (this line's other "
        "details differ from that line's and were not imported)"
    ),
}
SPANISH_WORDS = [
    "un número de recibo tiene 13 caracteres (3 letras y 10 dígitos); &#x27;EAC12345&#x27; "
    "tiene 8; fila omitida",
    "no es un número de formulario de USCIS que casewatch reconozca (como I-485 o N-400); "
    "el caso se sigue sin este dato",
    "no es un número de teléfono válido (demasiado corto); el caso se sigue sin este dato",
    "el recibo EAC9999103403 ya aparece en la línea 2; se importa una sola vez",
]


def _spanish_member() -> Browser:
    firm = Firm.objects.create(name="Example Immigration Law", slug="example")
    user = User.objects.create_user(username="sofia", password="correct horse battery")
    Membership.objects.create(firm=firm, user=user, role=Role.PARALEGAL, language="es")
    browser = Browser(headers={"accept-language": SPANISH})
    sign_in(browser, user)
    return browser


def _text(html: str) -> str:
    return " ".join(html.split())


# --- The web pages ---------------------------------------------------------------------


@pytest.mark.django_db
def test_a_spanish_member_reads_the_import_previews_row_problems_in_spanish() -> None:
    browser = _spanish_member()
    upload = browser.post(
        "/intake/import/", {"file": SimpleUploadedFile("caseload.csv", SHEET.encode())}
    )
    assert upload.status_code == 302
    review = browser.get(upload["Location"]).content.decode()
    for words in SPANISH_WORDS:
        assert words in _text(review), words
    for english in ENGLISH.values():
        assert english.split(";")[0].replace("'", "&#x27;") not in review
    assert _english_left(review) == []

    fingerprint = re.search(r'name="fingerprint" value="([0-9a-f]+)"', review)
    assert fingerprint
    browser.post(upload["Location"] + "commit/", {"fingerprint": fingerprint.group(1)})
    done = browser.get(upload["Location"] + "done/").content.decode()
    # The result page is shown from what was kept after the import, still in Spanish.
    for words in SPANISH_WORDS:
        assert words in _text(done), words
    assert _english_left(done) == []


@pytest.mark.django_db
def test_a_file_that_is_no_spreadsheet_is_explained_in_spanish() -> None:
    browser = _spanish_member()
    page = browser.post(
        "/intake/import/", {"file": SimpleUploadedFile("scan.csv", b"%PDF-1.7 not a sheet")}
    ).content.decode()
    assert (
        "esto no es un archivo CSV ni un libro de Excel .xlsx: es un documento PDF, "
        "no una hoja de cálculo"
    ) in page
    assert _english_left(page) == []


@pytest.mark.django_db
def test_the_pasted_list_says_why_an_item_is_no_receipt_in_spanish() -> None:
    pasted = "EAC9999103403\nABC\n1234567890123"
    page = _spanish_member().post("/intake/receipts/", {"receipts": pasted}).content.decode()
    text = _text(page).replace("&#x27;", "'")
    assert (
        "un número de recibo tiene 13 caracteres (3 letras y 10 dígitos); 'ABC' tiene 3; "
        "fila omitida"
    ) in text
    assert "un número de recibo empieza con 3 letras; '1234567890123' no; fila omitida" in text
    assert _english_left(page) == []


@pytest.mark.django_db
def test_the_bulk_status_check_says_why_an_input_is_no_receipt_in_spanish() -> None:
    response = _spanish_member().post("/intake/check/", {"receipts": "EAC123"})
    chunks = response.streaming_content  # type: ignore[attr-defined]
    page = "".join(chunk.decode() for chunk in chunks)
    text = _text(page).replace("&#x27;", "'")
    assert "No es un número de recibo, así que no se consultó a USCIS." in text
    assert (
        "(un número de recibo tiene 13 caracteres (3 letras y 10 dígitos); 'EAC123' tiene 6)"
    ) in text
    assert _english_left(page) == []


# --- The command line -------------------------------------------------------------------


def test_casewatch_import_json_keeps_its_english_messages(tmp_path: Path) -> None:
    path = tmp_path / "caseload.csv"
    path.write_text(SHEET, encoding="utf-8")
    spanish_locale = {"LANG": "es_MX.UTF-8", "LANGUAGE": "es", "LC_ALL": "es_MX.UTF-8"}
    result = casewatch(
        "import", str(path), "--json", "--dry-run", data_dir=tmp_path / "data", env=spanish_locale
    )
    assert result.returncode == 1, result.stderr
    errors: list[dict[str, Any]] = json.loads(result.stdout)["errors"]
    said = {(e["row"], e["column"]): e["message"] for e in errors}
    for place, english in ENGLISH.items():
        assert said[place] == english, place
    assert set(errors[0]) == {"row", "column", "value", "message"}  # nothing added to the JSON


# --- The two sides kept together ----------------------------------------------------------


def _all_messages() -> dict[str, str]:
    return {**receipts.MESSAGES, **sheet.MESSAGES}


def test_every_message_of_the_core_has_its_page_wording_with_the_same_values() -> None:
    messages = _all_messages()
    assert set(messages) == set(WORDINGS)
    for code, english in messages.items():
        with translation.override("en"):
            page = str(WORDINGS[code])  # the msgid: English is the source language
        assert set(re.findall(r"%\((\w+)\)s", page)) == placeholders(english), code
        values = {name: f"<{name}>" for name in placeholders(english)}
        with translation.override("en"):
            assert in_words(Wording(code, english, **values)) == english.format(**values), code
        with translation.override("es"):
            spanish = in_words(Wording(code, english, **values))
        assert spanish != english.format(**values), f"{code} has no Spanish"


def test_a_wording_is_the_english_it_always_was_and_survives_a_copy() -> None:
    import pickle

    reason = receipts.MESSAGES["receipt.letters"]
    said = Wording("receipt.letters", reason, number="'123ABC'")
    assert said == "a receipt number starts with 3 letters; '123ABC' does not"
    assert isinstance(said, str) and json.dumps(said) == json.dumps(str(said))
    copied = pickle.loads(pickle.dumps(said))
    assert copied == said and copied.code == "receipt.letters"
    assert copied.as_data() == {"code": "receipt.letters", "params": {"number": "'123ABC'"}}
    with pytest.raises(receipts.InvalidReceipt) as raised:
        receipts.parse_receipt("123ABC1234567")
    assert raised.value.wording is not None and raised.value.wording.code == "receipt.letters"
    with translation.override("es"):
        assert in_words(raised.value.wording) == (
            "un número de recibo empieza con 3 letras; '123ABC1234567' no"
        )
