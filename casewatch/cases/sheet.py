"""A firm's caseload spreadsheet (CSV or XLSX) turned into validated rows.

Pure Python, no Django and no database: `read_sheet` reads whatever a firm
exports (any common CSV dialect and encoding, or an Excel workbook) and maps its
headers; `validate_sheet` cleans every row and says, in words a paralegal
understands, what was wrong and what was kept. casewatch.cases.intake writes the
result. Client names, e-mails and phones never appear in clear in a report.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import functools
import gc
import io
import itertools
import re
import unicodedata
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import email_validator
import phonenumbers
from email_validator import EmailNotValidError, validate_email

from casewatch.core.receipts import InvalidReceipt, Receipt, is_valid_receipt, parse_receipt
from casewatch.core.spreadsheet import FORMULA_STARTS
from casewatch.core.wording import Wording

# What the reader and the validator say, by message id: the English of `casewatch import`
# and of its `--json`. Pages word them in their own language (casewatch.web.labels.WORDINGS).
# "{problem}" is another message (a cell's or the receipt's problem); "{detail}" is what a
# library said (email_validator, the CSV or XLSX reader, the operating system).
MESSAGES: Mapping[str, str] = {
    # A row as a whole.
    "row.no_receipt": "no receipt number; row skipped",
    "row.bad_receipt": "{problem}; row skipped",
    "row.receipt_warning": "{problem}; the case is tracked",
    "row.repeat": "receipt {receipt} already appears on line {line}; imported once",
    "row.repeat_differs": (
        "receipt {receipt} already appears on line {line}; imported once (this line's other "
        "details differ from that line's and were not imported)"
    ),
    "row.overflow": (
        "this line has values to the right of the last named column (a comma or semicolon "
        "inside an unquoted value can cause this); they were ignored, so check this line's "
        "other values"
    ),
    # One cell.
    "cell.dropped": "{problem}; the case is tracked without it",
    "cell.spreadsheet_error": "the cell shows the spreadsheet error {text}",
    "form.unknown": "not a USCIS form number casewatch recognizes (like I-485 or N-400)",
    "client_id.too_long": "longer than {limit} characters",
    "name.no_letters": "has no letters, so it cannot be a name",
    "name.formula": (
        "starts with {char}, which a spreadsheet would run as a formula; it is kept as plain "
        "text, so check the name is right"
    ),
    "email.several": "holds more than one e-mail address; the first one is kept",
    "email.invalid": "not a valid e-mail address ({detail})",
    "email.empty": "empty",
    "phone.invalid": "not a valid phone number",
    "phone.invalid_because": "not a valid phone number ({detail})",
    "phone.several": "holds more than one phone number; the first one is kept",
    "phone.unknown_country": "unknown country code",
    "phone.not_a_number": "it does not look like a phone number",
    "phone.too_short": "too short",
    "phone.too_long": "too long",
    "phone.no_area_code": "the area code is missing",
    "phone.wrong_length": "it has the wrong number of digits",
    "phone.no_such_number": (
        "no such number exists; check the area code and digits, and write numbers outside "
        "the US with + and the country code"
    ),
    "language.several": "names more than one language; the first one is kept",
    "language.unknown": (
        "not a language casewatch knows (write a code like es or a name like Spanish)"
    ),
    # The whole file.
    "file.unreadable": "cannot read the file ({detail})",
    "file.not_a_sheet": "this is not a CSV file or an Excel .xlsx workbook: {problem}",
    "file.xls": (
        "it is an old-style Excel 97-2003 .xls workbook (or another old Office file); "
        "save it as .xlsx or CSV and import that"
    ),
    "file.pdf": "it is a PDF document, not a spreadsheet",
    "file.png": "it is a PNG image, not a spreadsheet",
    "file.jpeg": "it is a JPEG image, not a spreadsheet",
    "file.rtf": "it is an RTF document, not a spreadsheet",
    "file.gzip": "it is a gzip archive; unpack it first",
    "file.empty": "the file is empty",
    "file.first_sheet_empty": "the first worksheet is empty",
    "file.not_text": "this does not look like a CSV file or an Excel workbook",
    "file.not_text_named_xlsx": (
        "this does not look like a CSV file or an Excel workbook (its name ends in .xlsx but "
        "it is not a readable workbook: damaged?)"
    ),
    "file.utf16_damaged": (
        "the file starts like UTF-16 text (Excel's “Unicode text”) but is damaged"
    ),
    "file.csv_line": (
        "line {line} cannot be read as CSV ({detail}); an unmatched quote can cause this"
    ),
    "file.no_worksheet": "the workbook has no worksheet",
    "file.first_sheet_only": (
        "{problem} (only the first worksheet, {title}, is read; the workbook has {count})"
    ),
    "file.workbook_unreadable": "the Excel workbook cannot be read ({detail})",
    "file.workbook_damaged": "the file looks like an Excel workbook but is damaged ({detail})",
    "file.opendocument": (
        "this is an OpenDocument or Apple Numbers file; export it as .xlsx or CSV and import that"
    ),
    "file.zip": "this is a zip archive, not an Excel .xlsx workbook",
    "file.unpacks_too_big": (
        "the workbook unpacks to more than {limit} MB; split it into smaller files"
    ),
    "file.data_first_row": (
        "no receipt number column: the first row looks like data (it holds {receipt}), not "
        "headers; add a header row with a column named 'Receipt Number'"
    ),
    "file.no_receipt_column": (
        "no receipt number column; the headers found are {headers} (name the column "
        "'Receipt Number', 'Receipt #' or 'Case Number')"
    ),
    "file.no_receipt_column_more": (
        "no receipt number column; the headers found are {headers} and {more} more (name the "
        "column 'Receipt Number', 'Receipt #' or 'Case Number')"
    ),
}


def _said(code: str, **params: object) -> Wording:
    return Wording(code, MESSAGES[code], **params)


# The canonical columns of cli.md, in the order reports list them.
COLUMNS = (
    "receipt_number",
    "form_type",
    "client_id",
    "client_name",
    "client_email",
    "client_phone",
    "client_language",
    "attorney",
    "paralegal",
    "tags",
    "notes",
)

# Columns holding client data: their values are masked in every report.
PERSONAL_COLUMNS = frozenset({"client_name", "client_email", "client_phone"})

# Client.reference is a CharField(max_length=100).
MAX_CLIENT_ID = 100

# Parts of a name split over several columns, combined into client_name in this order.
_NAME_PARTS = ("given_name", "middle_name", "family_name", "second_family_name")

# What a column of a file may be mapped to (the web import lets a person choose).
TARGETS = (*COLUMNS, *_NAME_PARTS)


def _listed(text: str, separator: str | None = ",") -> tuple[str, ...]:
    """Words of a table written compactly as one string."""
    return tuple(word.strip() for word in text.split(separator) if word.strip())


# Header spellings seen in firms' exports, English and Spanish. They are compared
# after `_header_key` (case, accents, spaces and punctuation do not matter, and
# "#" reads as "number"), so "Receipt #", "RECEIPT_NUMBER" and "receipt number"
# are one entry. The canonical names themselves are always accepted.
_HEADER_ALIASES: Mapping[str, str] = {
    "receipt_number": (
        "receipt, receipt number, receipt no, receipt num, receipt nbr, uscis receipt, "
        "uscis receipt number, case number, case no, case receipt, recibo, numero de recibo, "
        "no de recibo, numero de caso"
    ),
    "form_type": (
        "form, form type, form number, form no, uscis form, petition type, application type, "
        "formulario, tipo de formulario, numero de formulario"
    ),
    "client_id": (
        "client id, client number, client no, client ref, client reference, ref, reference, "
        "our ref, file number, file no, file id, matter, matter number, matter no, "
        "matter id, expediente, numero de expediente, numero de cliente, id de cliente, "
        "id del cliente"
    ),
    "client_name": (
        "client, name, full name, client name, beneficiary, beneficiary name, applicant, "
        "applicant name, cliente, nombre, nombre completo, beneficiario, solicitante"
    ),
    "given_name": (
        "first name, first, given name, given names, forename, primer nombre, nombres, "
        "nombre de pila"
    ),
    "middle_name": "middle name, middle, segundo nombre",
    "family_name": "last name, last, surname, family name, apellido, apellidos, primer apellido",
    "second_family_name": "segundo apellido",
    "client_email": (
        "email, e-mail, email address, e-mail address, correo, correo electronico, "
        "email del cliente"
    ),
    "client_phone": (
        "phone, phone number, telephone, telephone number, tel, mobile, mobile phone, "
        "mobile number, cell, cell phone, cellphone, whatsapp, whatsapp number, telefono, "
        "numero de telefono, celular, movil"
    ),
    "client_language": (
        "language, preferred language, language preference, lang, idioma, idioma preferido, lengua"
    ),
    "attorney": (
        "attorney, attorney name, responsible attorney, attorney of record, atty, lawyer, "
        "counsel, abogado, abogada, abogado responsable"
    ),
    "paralegal": "paralegal, assistant, legal assistant, case manager, asistente, asistente legal",
    "tags": "tags, tag, labels, label, categories, category, etiquetas, etiqueta",
    "notes": (
        "notes, note, comments, comment, remarks, memo, notas, nota, comentarios, observaciones"
    ),
}

# Words around a header that say whose value it is, not what it is:
# "Client E-mail", "Applicant Phone", "Correo del cliente", "Case Notes".
_HEADER_PREFIXES = _listed(
    "client, cliente, applicant, beneficiary, beneficiario, solicitante, case, caso, uscis, "
    "primary, principal"
)
_HEADER_SUFFIXES = ("delcliente", "decliente", "cliente", "delbeneficiario", "address")

# Languages a firm's clients commonly speak: ISO 639-1 code, then names in
# English, Spanish and the language itself, and ISO 639-2 codes.
_LANGUAGE_NAMES: Mapping[str, str] = {
    "en": "English, Inglés, eng",
    "es": "Spanish, Español, Castellano, Castilian, spa",
    "pt": "Portuguese, Português, Portugués, por",
    "zh": (
        "Chinese, Mandarin, Cantonese, 中文, 汉语, 漢語, 普通话, 國語, 华语, 粤语, 廣東話, "
        "广东话, Chino, Mandarín, Cantonés, zho, chi"
    ),
    "vi": "Vietnamese, Tiếng Việt, Vietnamita, vie",
    "hi": "Hindi, हिन्दी, हिंदी, hin",
    "ar": "Arabic, العربية, عربي, Árabe, ara",
    "ht": (
        "Haitian Creole, Haitian, Creole, Kreyòl, Kreyòl ayisyen, Créole haïtien, "
        "Criollo haitiano, Criollo, hat"
    ),
    "fr": "French, Français, Francés, fra, fre",
    "tl": "Tagalog, Filipino, Pilipino, Tagalo, fil, tgl",
    "ko": "Korean, 한국어, Coreano, kor",
    "ru": "Russian, Русский, Ruso, rus",
    "uk": "Ukrainian, Українська, Ucraniano, ukr",
    "fa": "Persian, Farsi, Dari, فارسی, Persa, fas, per",
    "ur": "Urdu, اردو, urd",
    "bn": "Bengali, Bangla, বাংলা, Bengalí, ben",
    "pa": "Punjabi, Panjabi, ਪੰਜਾਬੀ, Panyabí, pan",
    "gu": "Gujarati, ગુજરાતી, Guyaratí, guj",
    "ja": "Japanese, 日本語, Japonés, jpn",
    "de": "German, Deutsch, Alemán, deu, ger",
    "it": "Italian, Italiano, ita",
    "pl": "Polish, Polski, Polaco, pol",
    "ro": "Romanian, Română, Rumano, ron, rum",
    "el": "Greek, Ελληνικά, Griego, ell, gre",
    "he": "Hebrew, עברית, Hebreo, heb",
    "tr": "Turkish, Türkçe, Turco, tur",
    "am": "Amharic, አማርኛ, Amárico, amh",
    "ti": "Tigrinya, ትግርኛ, Tigriña, tir",
    "so": "Somali, Soomaali, Somalí, som",
    "sw": "Swahili, Kiswahili, Suajili, swa",
    "ne": "Nepali, नेपाली, Nepalí, nep",
    "my": "Burmese, Myanmar, မြန်မာ, Birmano, mya, bur",
    "km": "Khmer, Cambodian, ខ្មែរ, Jemer, Camboyano, khm",
    "ps": "Pashto, Pashtu, پښتو, Pastún, pus",
    "hy": "Armenian, Հայերեն, Armenio, hye, arm",
    "th": "Thai, ไทย, Tailandés, tha",
    "lo": "Lao, ລາວ, lao",
    "qu": "Quechua, Runasimi, que",
}

# Every ISO 639-1 code, so a code the table above does not name is still accepted.
_ISO_639_1 = frozenset(
    _listed(
        """
    aa ab ae af ak am an ar as av ay az ba be bg bi bm bn bo br bs ca ce ch co cr cs cu
    cv cy da de dv dz ee el en eo es et eu fa ff fi fj fo fr fy ga gd gl gn gu gv ha he hi
    ho hr ht hu hy hz ia id ie ig ii ik io is it iu ja jv ka kg ki kj kk kl km kn ko kr ks
    ku kv kw ky la lb lg li ln lo lt lu lv mg mh mi mk ml mn mr ms mt my na nb nd ne ng nl
    nn no nr nv ny oc oj om or os pa pi pl ps pt qu rm rn ro ru rw sa sc sd se sg si sk sl
    sm sn so sq sr ss st su sv sw ta te tg th ti tk tl tn to tr ts tt tw ty ug uk ur uz ve
    vi vo wa wo xh yi yo za zh zu""",
        None,
    )
)

# What people type when a cell has nothing to say; treated as an empty cell.
_PLACEHOLDERS = frozenset(
    _listed(
        "n/a|na|n.a.|none|null|nil|-|--|---|—|–|?|tbd|unknown|desconocido|ninguno|ninguna|"
        "no aplica",
        "|",
    )
)

# What Excel shows in a cell whose formula failed; never a real value.
_EXCEL_ERRORS = frozenset(
    _listed(
        "#N/A #VALUE! #REF! #NAME? #DIV/0! #NUM! #NULL! #SPILL! #CALC! #FIELD! #BLOCKED! "
        "#CONNECT! #BUSY! #UNKNOWN! #GETTING_DATA",
        " ",
    )
)

# Files people upload by mistake, recognized by their first bytes.
_NOT_A_SHEET: Mapping[bytes, str] = {
    b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1": "file.xls",
    b"%PDF": "file.pdf",
    b"\x89PNG": "file.png",
    b"\xff\xd8\xff": "file.jpeg",
    b"{\\rtf": "file.rtf",
    b"\x1f\x8b": "file.gzip",
}

_LONGEST_PLACEHOLDER = max(map(len, _PLACEHOLDERS))
_ZIP_MAGIC = b"PK\x03\x04"
# A workbook is a zip: a few megabytes can unpack to gigabytes. Larger is refused unread.
MAX_UNPACKED_MB = 256
_DELIMITERS = ",;\t|"
_SNIFF_CHARS = 16_384
_MAX_PREAMBLE_ROWS = 10  # title lines tolerated above the header row
_MASK = "•••"

_HEADER_NOISE = re.compile(r"[\W_]+")
_TAG_SEPARATORS = re.compile(r"[,;|]")
_EMAIL_SEPARATORS = re.compile(r"[\s,;/]+")
_PHONE_SEPARATORS = re.compile(r"\s*(?:[;,/|\n]|\bor\b|\bo\b)\s*", re.IGNORECASE)
_LANGUAGE_SEPARATORS = re.compile(r"\s*(?:[/,;&+]|\band\b|\by\b)\s*", re.IGNORECASE)
_ANGLE_ADDRESS = re.compile(r"<([^<>]*@[^<>]*)>")
_LANGUAGE_TAG = re.compile(r"([A-Za-z]{2,3})(?:[-_][A-Za-z0-9]{1,8})*")
_FORM = re.compile(r"(?:FORM\s*)?(AR|I|N|G)\s*[-‐‑–—_.]?\s*(\d{1,4})\s*-?\s*([A-Z]{0,2})")
# A plain ASCII address: checked here in a microsecond instead of email_validator's
# ~60 µs. Anything else (quotes, IDNA, odd lengths) goes to email_validator.
_SIMPLE_EMAIL = re.compile(
    r"([A-Za-z0-9_%+-]+(?:\.[A-Za-z0-9_%+-]+)*)"
    r"@((?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63})"
)
# A US number as people write it: (202) 555-0142, 202.555.0142, +1 202 555 0142.
_US_PHONE = re.compile(r"(?:\+?1[\s.-]?)?(?:\((\d{3})\)|(\d{3}))[\s.-]?(\d{3})[\s.-]?(\d{4})")
_PERSONAL_HINT = re.compile(r"@|\d{7}|\d[\d\s().-]{8,}\d")


class SheetError(Exception):
    """The whole file cannot be used; the message says what was wrong and what was found."""


class NoReceiptColumn(SheetError):
    """No header names a receipt column; a person may still say which column holds them."""


@dataclass(frozen=True, slots=True)
class RawRow:
    """One data row as found: cell text by canonical column, whitespace trimmed.

    `line` is the 1-based line (CSV) or worksheet row (XLSX) where the row starts.
    `overflow` holds non-empty cells to the right of the last header, a sign that
    an unquoted delimiter shifted the row.
    """

    line: int
    values: dict[str, str]
    overflow: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Sheet:
    """A read file: which header feeds each canonical column, and the data rows."""

    columns: dict[str, str]
    ignored_columns: list[str]
    rows: list[RawRow]
    kind: str = "csv"  # "csv" or "xlsx"
    header_line: int = 1
    # The header row as found, and which of its positions feeds which of TARGETS.
    headers: tuple[str, ...] = ()
    mapping: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RowError:
    """A problem with one cell (`column`) or a whole row (`column` None)."""

    row: int
    column: str | None
    value: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "row": self.row,
            "column": self.column,
            "value": self.value,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class RowResult:
    """A validated row: `receipt_number` None means the caller skips the row.

    `rejected` tells a skipped row with a missing or invalid receipt (an import
    failure) from a repeat of a receipt earlier in the file (imported once).
    Optional fields are "" (or []) when empty or refused.
    """

    line: int
    receipt_number: str | None
    rejected: bool = False
    form_type: str = ""
    client_id: str = ""
    client_name: str = ""
    client_email: str = ""
    client_phone: str = ""
    client_language: str = ""
    attorney: str = ""
    paralegal: str = ""
    tags: list[str] = field(default_factory=list)
    notes: str = ""
    errors: list[RowError] = field(default_factory=list)


# -- reading -------------------------------------------------------------------------------


def read_sheet(path: Path) -> Sheet:
    """Read a CSV or XLSX file from disk; see `read_sheet_bytes`."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SheetError(_said("file.unreadable", detail=exc.strerror or str(exc))) from exc
    return read_sheet_bytes(data, path.name)


def read_sheet_bytes(data: bytes, name: str, *, mapping: Mapping[int, str] | None = None) -> Sheet:
    """Read an uploaded file; the content decides CSV or XLSX, `name` only words messages.

    `mapping` (header position → one of TARGETS) replaces the guess from the headers;
    with it, a file whose headers name no receipt column is read from its first row.
    """
    if data.startswith(_ZIP_MAGIC):
        return _read_xlsx(data, mapping)
    for magic, why in _NOT_A_SHEET.items():
        if data.startswith(magic):
            raise SheetError(_said("file.not_a_sheet", problem=_said(why)))
    text = _decode(data)
    if not text.strip():
        raise SheetError(_said("file.empty"))
    if _looks_binary(text):
        named_xlsx = name.lower().endswith((".xlsx", ".xlsm"))
        raise SheetError(_said("file.not_text_named_xlsx" if named_xlsx else "file.not_text"))
    return _read_csv(text, mapping)


def _decode(data: bytes) -> str:
    """Text by byte-order mark, else UTF-8, else Windows-1252 (Excel's CSV on Windows)."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise SheetError(_said("file.utf16_damaged")) from exc
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def _looks_binary(text: str) -> bool:
    """NUL bytes anywhere or many control characters: not a text file, whatever its name.

    The whole text is searched for NUL (PostgreSQL cannot store it), the rest sampled.
    """
    if "\x00" in text:
        return True
    sample = text[:8192]
    controls = sum(1 for ch in sample if ch < " " and ch not in "\t\n\r\x0b\x0c")
    return controls * 50 > len(sample)


def _read_csv(text: str, mapping: Mapping[int, str] | None = None) -> Sheet:
    return _build_sheet(_numbered_csv_rows(text, _sniff_delimiter(text)), "csv", mapping)


def _numbered_csv_rows(text: str, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """Each row with the physical line it starts on (quoted newlines span lines)."""
    reader = csv.reader(
        io.StringIO(text, newline=""),
        delimiter=delimiter,
        quotechar='"',
        doublequote=True,
        skipinitialspace=False,
        strict=False,
    )
    start = 1
    try:
        for cells in reader:
            yield start, cells
            start = reader.line_num + 1
    except csv.Error as exc:
        raise SheetError(_said("file.csv_line", line=start, detail=str(exc))) from exc


def _sniff_delimiter(text: str) -> str:
    """csv.Sniffer on whole lines; if it fails or disagrees with the header, count there."""
    sample = text[:_SNIFF_CHARS]
    if len(text) > _SNIFF_CHARS:
        cut = max(sample.rfind("\n"), sample.rfind("\r"))
        if cut > 0:
            sample = sample[:cut]
    header = next((line for line in sample.splitlines() if line.strip()), "")
    try:
        sniffed: str | None = csv.Sniffer().sniff(sample, delimiters=_DELIMITERS).delimiter
    except csv.Error:
        sniffed = None
    if sniffed is not None and sniffed in header:
        return sniffed
    counts = {d: header.count(d) for d in _DELIMITERS}
    best = max(_DELIMITERS, key=lambda d: counts[d])
    if counts[best]:
        return best
    return sniffed or ","


def _read_xlsx(data: bytes, mapping: Mapping[int, str] | None = None) -> Sheet:
    """The first worksheet, read streaming; cell values rendered as a person would type them."""
    from openpyxl import load_workbook

    if _unpacked_size(data) > MAX_UNPACKED_MB * 1024 * 1024:
        raise SheetError(_said("file.unpacks_too_big", limit=MAX_UNPACKED_MB))
    try:
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:
        raise SheetError(_zip_problem(data, exc)) from exc
    try:
        sheets = workbook.worksheets
        if not sheets:
            raise SheetError(_said("file.no_worksheet"))
        sheet = sheets[0]
        sheet.reset_dimensions()  # some writers record a wrong size; read what is there
        rows = (
            (number, [_cell_text(value) for value in values])
            for number, values in enumerate(sheet.iter_rows(values_only=True), start=1)
        )
        try:
            return _build_sheet(rows, "xlsx", mapping)
        except SheetError as exc:
            if len(sheets) > 1:
                raise SheetError(
                    _said(
                        "file.first_sheet_only",
                        problem=_reason(exc),
                        title=repr(sheet.title),
                        count=len(sheets),
                    )
                ) from exc
            raise
    except SheetError:
        raise
    except Exception as exc:
        raise SheetError(_said("file.workbook_unreadable", detail=_describe(exc))) from exc
    finally:
        workbook.close()


def _unpacked_size(data: bytes) -> int:
    """What the zip's members say they unpack to (0 when it is no readable zip)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return sum(info.file_size for info in archive.infolist())
    except Exception:
        return 0


def _zip_problem(data: bytes, exc: Exception) -> Wording:
    """Why a zip file is not a workbook we read: .ods, Numbers, or damage."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
    except Exception:
        return _said("file.workbook_damaged", detail=_describe(exc))
    if "xl/workbook.xml" in names:
        return _said("file.workbook_unreadable", detail=_describe(exc))
    if "mimetype" in names or any(n.startswith("Index/") for n in names):
        return _said("file.opendocument")
    return _said("file.zip")


def _reason(exc: Exception) -> str:
    """An exception's message as raised: the Wording itself when it carries one."""
    reason = exc.args[0] if exc.args else None
    return reason if isinstance(reason, Wording) else str(exc)


def _describe(exc: Exception) -> str:
    return str(exc).strip() or type(exc).__name__


def _cell_text(value: object) -> str:
    """A cell as text: 1.0 → "1", dates in ISO, TRUE/FALSE like Excel shows them."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, datetime):
        if value.time() == time(0):
            return value.date().isoformat()
        return value.isoformat(sep=" ")
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return str(value)
    return str(value)


# -- headers -------------------------------------------------------------------------------


def _header_key(text: str) -> str:
    """Case, accents, BOM remnants, spaces and punctuation removed; "#" reads as "number"."""
    text = text.replace("\ufeff", "").replace("#", " number ")
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _HEADER_NOISE.sub("", bare.casefold())


def _index(table: Mapping[str, str], *, include_keys: bool) -> dict[str, str]:
    """Alias → target (aliases are comma-separated), refusing one that means two things."""
    index: dict[str, str] = {}
    for target, listed in table.items():
        aliases = _listed(listed)
        for alias in (target, *aliases) if include_keys else aliases:
            key = _header_key(alias)
            if index.setdefault(key, target) != target:
                raise ValueError(f"{alias!r} means both {index[key]!r} and {target!r}")
    return index


_HEADER_LOOKUP = _index(_HEADER_ALIASES, include_keys=True)
_LANGUAGE_LOOKUP = _index(_LANGUAGE_NAMES, include_keys=False)


def _canonical(header: str) -> str | None:
    """The column a header means, trying it bare of words like "Client" or "del cliente"."""
    key = _header_key(header)
    found = _HEADER_LOOKUP.get(key)
    if found is not None or not key:
        return found
    for prefix in _HEADER_PREFIXES:
        if key.startswith(prefix) and len(key) > len(prefix):
            found = _HEADER_LOOKUP.get(key[len(prefix) :])
            if found is not None:
                return found
    for suffix in _HEADER_SUFFIXES:
        if key.endswith(suffix) and len(key) > len(suffix):
            found = _HEADER_LOOKUP.get(key[: -len(suffix)])
            if found is not None:
                return found
    return None


@dataclass(frozen=True, slots=True)
class _Layout:
    """Where each canonical column sits in a row, decided once from the header."""

    columns: dict[str, str]
    positions: list[tuple[int, str]]
    name_positions: list[int]
    ignored: list[str]
    width: int
    mapping: dict[int, str]


def _layout(header: list[str], chosen: Mapping[int, str] | None = None) -> _Layout:
    """Which column feeds what: guessed from the header's words, or as `chosen` says."""
    found: dict[str, tuple[int, str]] = {}
    ignored: list[tuple[int, str]] = []
    for position, cell in enumerate(header):
        text = cell.strip()
        if chosen is not None:
            canonical = chosen.get(position)
            text = text or f"column {position + 1}"
        elif text:
            canonical = _canonical(text)
        else:
            continue
        if canonical is None or canonical not in TARGETS or canonical in found:
            if cell.strip():
                ignored.append((position, text))
        else:
            found[canonical] = (position, text)
    # "Nombre" next to "Apellido" is a given name; next to "First Name" it is a full name.
    given_in_name = chosen is None and "family_name" in found and "given_name" not in found
    parts = [(part, found.pop(part)) for part in _NAME_PARTS if part in found]
    if parts and "client_name" in found:
        if given_in_name:
            parts.insert(0, ("given_name", found.pop("client_name")))
        else:
            ignored.extend(spot for _, spot in parts)  # a full-name column wins over its parts
            parts = []
    columns = {canonical: text for canonical, (_, text) in found.items()}
    if parts:
        columns["client_name"] = " + ".join(text for _, (_, text) in parts)
    mapping = {position: canonical for canonical, (position, _) in found.items()}
    mapping.update((position, part) for part, (position, _) in parts)
    return _Layout(
        columns=columns,
        positions=[(position, canonical) for canonical, (position, _) in found.items()],
        name_positions=[position for _, (position, _) in parts],
        ignored=[text for _, text in sorted(ignored)],
        width=len(header),
        mapping=dict(sorted(mapping.items())),
    )


def _build_sheet(
    rows: Iterator[tuple[int, list[str]]], kind: str, mapping: Mapping[int, str] | None = None
) -> Sheet:
    """Find the header (tolerating a few title lines above it), then collect the data rows.

    With a `mapping` the header is found the same way, and where no header names a
    receipt column, the first non-empty row is the header.
    """
    skipped: list[tuple[int, list[str]]] = []  # non-empty rows above the header, in order
    layout: _Layout | None = None
    header: list[str] = []
    header_line = 0
    for line, cells in rows:
        if not "".join(cells).strip():
            continue
        candidate = _layout(cells)
        if "receipt_number" in candidate.columns:
            layout, header, header_line = candidate, cells, line
            break
        skipped.append((line, cells))
        if len(skipped) >= _MAX_PREAMBLE_ROWS:
            break
    if layout is None and not skipped:
        raise SheetError(_said("file.empty" if kind == "csv" else "file.first_sheet_empty"))
    if layout is None and mapping is None:
        raise NoReceiptColumn(_no_receipt_column(skipped[0][1]))
    if layout is None:
        (header_line, header), rows = skipped[0], itertools.chain(skipped[1:], rows)
    if mapping is not None:
        layout = _layout(header, mapping)
    assert layout is not None

    data: list[RawRow] = []
    positions, name_positions, width = layout.positions, layout.name_positions, layout.width
    with _collection_paused():
        for line, cells in rows:
            if not "".join(cells).strip():
                continue
            count = len(cells)
            values = {c: cells[p].strip() if p < count else "" for p, c in positions}
            if name_positions:
                parts = (cells[p].strip() for p in name_positions if p < count)
                values["client_name"] = " ".join(part for part in parts if part)
            overflow: tuple[str, ...] = ()
            if count > width:
                overflow = tuple(text for cell in cells[width:] if (text := cell.strip()))
            data.append(RawRow(line, values, overflow))
    return Sheet(
        columns=layout.columns,
        ignored_columns=layout.ignored,
        rows=data,
        kind=kind,
        header_line=header_line,
        headers=tuple(cell.strip() for cell in header),
        mapping=layout.mapping,
    )


@contextlib.contextmanager
def _collection_paused() -> Iterator[None]:
    """No cyclic garbage collection while building 50,000 rows of small containers.

    Nothing built here forms a cycle, and the collector's passes over the growing
    list cost about a third of the time.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _no_receipt_column(first: list[str]) -> Wording:
    """Say which headers were found, without repeating client data if row 1 is data."""
    cells = [cell.strip() for cell in first if cell.strip()]
    receipt = next((cell for cell in cells if is_valid_receipt(cell)), None)
    if receipt is not None:
        return _said("file.data_first_row", receipt=receipt)
    shown = [mask(cell) if _PERSONAL_HINT.search(cell) else cell[:40] for cell in cells[:20]]
    listed = ", ".join(repr(cell) for cell in shown)
    if len(cells) > 20:
        return _said("file.no_receipt_column_more", headers=listed, more=len(cells) - 20)
    return _said("file.no_receipt_column", headers=listed)


# -- validating ----------------------------------------------------------------------------


def mask(value: str) -> str:
    """First character and "•••": enough to find the cell, not enough to leak client data."""
    value = value.strip()
    return value[:1] + _MASK if value else ""


def validate_sheet(sheet: Sheet) -> list[RowResult]:
    """Every row validated; a receipt repeated in the file is kept only where it first appears."""
    results: list[RowResult] = []
    first_seen: dict[str, RowResult] = {}
    with _collection_paused():
        for raw in sheet.rows:
            result = validate_row(raw)
            number = result.receipt_number
            if number is not None:
                first = first_seen.setdefault(number, result)
                if first is not result:
                    result = _repeat(result, first, raw.values.get("receipt_number", number))
            results.append(result)
    return results


def _repeat(result: RowResult, first: RowResult, found: str) -> RowResult:
    """A repeat is not imported; its own field problems no longer matter."""
    code = "row.repeat_differs" if _details(result) != _details(first) else "row.repeat"
    message = _said(code, receipt=result.receipt_number, line=first.line)
    error = RowError(result.line, "receipt_number", found, message)
    return replace(result, receipt_number=None, rejected=False, errors=[error])


def _details(result: RowResult) -> tuple[object, ...]:
    return (
        result.form_type,
        result.client_id,
        result.client_name,
        result.client_email,
        result.client_phone,
        result.client_language,
        result.attorney,
        result.paralegal,
        result.tags,
        result.notes,
    )


def validate_row(raw: RawRow, *, receipt_required: bool = True) -> RowResult:
    """Clean one row; a bad optional field is reported and dropped, never the row.

    `receipt_required=False` (one case added by hand, its receipt still pending): a
    row without a receipt is kept, with `receipt_number` None and `rejected` False.
    """
    values = raw.values
    found = values.get("receipt_number", "")
    receipt: Receipt | None = None
    if not found or _is_placeholder(found):
        if receipt_required:
            error = RowError(raw.line, "receipt_number", found, _said("row.no_receipt"))
            return RowResult(raw.line, None, rejected=True, errors=[error])
    else:
        try:
            receipt = parse_receipt(found)
        except InvalidReceipt as exc:
            skipped = _said("row.bad_receipt", problem=_reason(exc))
            error = RowError(raw.line, "receipt_number", found, skipped)
            return RowResult(raw.line, None, rejected=True, errors=[error])

    line = raw.line
    errors: list[RowError] = []
    for warning in receipt.warnings if receipt is not None else ():
        tracked = _said("row.receipt_warning", problem=warning)
        errors.append(RowError(line, "receipt_number", found, tracked))
    cleaned: dict[str, str] = {}  # canonical column → value, named as RowResult's fields
    problem: str | None
    for column, text in values.items():
        clean = _CLEANERS.get(column)
        if clean is None or not text:
            continue
        if len(text) <= _LONGEST_PLACEHOLDER and text.casefold() in _PLACEHOLDERS:
            continue
        if text in _EXCEL_ERRORS:
            value, problem = "", _said("cell.spreadsheet_error", text=text)
        else:
            value, problem = clean(text)
        if value:
            cleaned[column] = value
        if problem is not None:
            shown = mask(text) if column in PERSONAL_COLUMNS else text
            message = problem if value else _said("cell.dropped", problem=problem)
            errors.append(RowError(line, column, shown, message))
    if raw.overflow:
        errors.append(
            RowError(
                line,
                None,
                ", ".join(mask(cell) for cell in raw.overflow),
                _said("row.overflow"),
            )
        )
    tags = values.get("tags")
    return RowResult(
        line,
        receipt.number if receipt is not None else None,
        rejected=False,
        tags=list(_tags(tags)) if tags else [],
        errors=errors,
        **cleaned,
    )


def _is_placeholder(text: str) -> bool:
    return len(text) <= _LONGEST_PLACEHOLDER and text.casefold() in _PLACEHOLDERS


# Each cleaner takes a non-empty trimmed cell and returns (value to keep, problem or None).
# A problem with an empty value means the field was dropped; with a value, a warning.
_Cleaned = tuple[str, str | None]


def _plain(text: str) -> str:
    """Whitespace collapsed and composed accents, so "José" matches however it was typed."""
    text = " ".join(text.split())
    return text if text.isascii() else unicodedata.normalize("NFC", text)


@functools.lru_cache(maxsize=1024)
def clean_form_type(text: str) -> _Cleaned:
    """Forms as USCIS writes them: "i485", "Form I 485" → "I-485"; I-129F, I-821D kept."""
    folded = unicodedata.normalize("NFKC", text).upper().strip()
    match = _FORM.fullmatch(folded)
    if match is None:
        return "", _said("form.unknown")
    prefix, digits, suffix = match.groups()
    return f"{prefix}-{digits}{suffix}", None


def _clean_client_id(text: str) -> _Cleaned:
    value = _plain(text)
    if len(value) > MAX_CLIENT_ID:
        return "", _said("client_id.too_long", limit=MAX_CLIENT_ID)
    return value, None


def clean_name(text: str) -> _Cleaned:
    """A name is stored as given; a formula-looking one is kept as text and flagged."""
    value = _plain(text)
    if not any(ch.isalpha() for ch in value):
        return "", _said("name.no_letters")
    if value.startswith(FORMULA_STARTS):
        return value, _said("name.formula", char=repr(value[0]))
    return value, None


@functools.lru_cache(maxsize=1024)
def _clean_person(text: str) -> _Cleaned:
    return _plain(text), None


def _clean_notes(text: str) -> _Cleaned:
    return text.replace("\r\n", "\n").replace("\r", "\n").strip(), None


@functools.lru_cache(maxsize=16_384)
def clean_email(text: str) -> _Cleaned:
    """The normalized address; "Name <a@b>" and "mailto:" are unwrapped, one of several kept."""
    simple = _simple_email(text)
    if simple is not None:
        return simple, None
    angle = _ANGLE_ADDRESS.search(text)
    candidate = angle.group(1) if angle else text
    candidate = candidate.strip()
    if candidate[:7].casefold() == "mailto:":
        candidate = candidate[7:]
    parts = [part for part in _EMAIL_SEPARATORS.split(candidate) if part]
    first_valid, problem = _email(parts[0]) if parts else ("", _said("email.empty"))
    if first_valid and len(parts) > 1:
        return first_valid, _said("email.several")
    if first_valid:
        return first_valid, None
    if len(parts) > 1:
        problem = _email(candidate)[1] or problem
    return "", _said("email.invalid", detail=problem)


def _email(text: str) -> tuple[str, str | None]:
    """email_validator's verdict (it costs ~60 µs), with a fast path for plain addresses."""
    simple = _simple_email(text)
    if simple is not None:
        return simple, None
    try:
        return validate_email(text, check_deliverability=False).normalized, None
    except EmailNotValidError as exc:
        return "", _scrub(str(exc).strip().rstrip("."), text)


def _simple_email(text: str) -> str | None:
    """The normalized form of a plain ASCII address email_validator would accept, else None."""
    match = _SIMPLE_EMAIL.fullmatch(text)
    if match is None or len(text) > 254:
        return None
    local, domain = match.groups()
    domain = domain.lower()
    if len(local) > 64 or "--" in domain:
        return None
    special = _special_use(tuple(email_validator.SPECIAL_USE_DOMAIN_NAMES))
    if domain in special[0] or domain.endswith(special[1]):
        return None
    return f"{local}@{domain}"


@functools.cache
def _special_use(names: tuple[str, ...]) -> tuple[frozenset[str], tuple[str, ...]]:
    """Domains email_validator refuses ("test", "local"…), as a set and as suffixes."""
    return frozenset(names), tuple("." + name for name in names)


def _scrub(message: str, text: str) -> str:
    """The library quotes parts of the address; mask them."""
    for piece in sorted({text, *re.split(r"[@.\s]+", text)}, key=len, reverse=True):
        if len(piece) >= 3:
            message = message.replace(piece, mask(piece))
    return message


@functools.lru_cache(maxsize=16_384)
def clean_phone(text: str) -> _Cleaned:
    """E.164 (+12025550142); US without a country code. Of several numbers, the first."""
    fast = _us_phone(text)
    if fast is not None:
        return fast, None
    parts = [part for part in _PHONE_SEPARATORS.split(text) if part.strip()]
    if not parts:
        return "", _said("phone.invalid")
    number, problem = _phone(parts[0].strip())
    if number and len(parts) > 1:
        return number, _said("phone.several")
    if number:
        return number, None
    return "", _said("phone.invalid_because", detail=problem)


_PARSE_PROBLEMS: Mapping[int, Wording] = {
    phonenumbers.NumberParseException.INVALID_COUNTRY_CODE: _said("phone.unknown_country"),
    phonenumbers.NumberParseException.NOT_A_NUMBER: _said("phone.not_a_number"),
    phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD: _said("phone.too_short"),
    phonenumbers.NumberParseException.TOO_SHORT_NSN: _said("phone.too_short"),
    phonenumbers.NumberParseException.TOO_LONG: _said("phone.too_long"),
}


_POSSIBILITY_PROBLEMS: Mapping[int, Wording] = {
    phonenumbers.ValidationResult.IS_POSSIBLE_LOCAL_ONLY: _said("phone.no_area_code"),
    phonenumbers.ValidationResult.TOO_SHORT: _said("phone.too_short"),
    phonenumbers.ValidationResult.TOO_LONG: _said("phone.too_long"),
    phonenumbers.ValidationResult.INVALID_LENGTH: _said("phone.wrong_length"),
}


def _phone(text: str) -> tuple[str, str | None]:
    """phonenumbers' verdict (parsing costs ~70 µs), with a fast path for US numbers."""
    fast = _us_phone(text)
    if fast is not None:
        return fast, None
    try:
        number = phonenumbers.parse(text, "US")
    except phonenumbers.NumberParseException as exc:
        return "", _PARSE_PROBLEMS.get(exc.error_type, _said("phone.not_a_number"))
    if not phonenumbers.is_valid_number(number):
        reason = phonenumbers.is_possible_number_with_reason(number)
        return "", _POSSIBILITY_PROBLEMS.get(reason, _said("phone.no_such_number"))
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), None


@functools.cache
def _us_patterns() -> tuple[re.Pattern[str], list[tuple[re.Pattern[str], tuple[int, ...]]]]:
    """The US patterns phonenumbers itself checks, compiled once."""
    metadata = phonenumbers.PhoneMetadata.metadata_for_region("US")
    assert metadata is not None
    general = metadata.general_desc
    assert general is not None and general.national_number_pattern is not None
    kinds = []
    for desc in (metadata.fixed_line, metadata.mobile):
        if desc is not None and desc.national_number_pattern is not None:
            lengths = tuple(desc.possible_length or general.possible_length or ())
            kinds.append((re.compile(desc.national_number_pattern), lengths))
    return re.compile(general.national_number_pattern), kinds


def _us_phone(text: str) -> str | None:
    """E.164 for a plainly written US landline or mobile phonenumbers accepts, else None.

    None means "ask phonenumbers", never "invalid": toll-free, extensions and
    foreign numbers take the slow path.
    """
    match = _US_PHONE.fullmatch(text)
    if match is None:
        return None
    area_a, area_b, exchange, line = match.groups()
    digits = f"{area_a or area_b}{exchange}{line}"
    general, kinds = _us_patterns()
    if general.fullmatch(digits) is None:
        return None
    for pattern, lengths in kinds:
        if (not lengths or len(digits) in lengths) and pattern.fullmatch(digits):
            return "+1" + digits
    return None


@functools.lru_cache(maxsize=1024)
def clean_language(text: str) -> _Cleaned:
    """ISO 639-1 from a code ("es", "es-MX", "spa") or a name in English, Spanish or itself."""
    code = _language(text)
    if code:
        return code, None
    parts = [part for part in _LANGUAGE_SEPARATORS.split(text) if part.strip()]
    if len(parts) > 1:
        code = _language(parts[0])
        if code:
            return code, _said("language.several")
    return "", _said("language.unknown")


def _language(text: str) -> str:
    text = text.strip()
    tag = _LANGUAGE_TAG.fullmatch(text)
    if tag is not None:
        primary = tag.group(1).lower()
        code = primary if primary in _ISO_639_1 else _LANGUAGE_LOOKUP.get(primary)
        if code:
            return code
    return _LANGUAGE_LOOKUP.get(_header_key(text), "")


def split_tags(text: str) -> list[str]:
    """Tags split on , ; or |, trimmed, duplicates (in any case) dropped, order kept."""
    return list(_tags(text))


@functools.lru_cache(maxsize=1024)
def _tags(text: str) -> tuple[str, ...]:
    """Cached as a tuple: the same few tag cells repeat down a sheet."""
    tags: list[str] = []
    seen: set[str] = set()
    for piece in _TAG_SEPARATORS.split(text):
        tag = _plain(piece)
        key = tag.casefold()
        if tag and key not in seen and not _is_placeholder(tag):
            seen.add(key)
            tags.append(tag)
    return tuple(tags)


_CLEANERS: Mapping[str, Callable[[str], _Cleaned]] = {
    "form_type": clean_form_type,
    "client_id": _clean_client_id,
    "client_name": clean_name,
    "client_email": clean_email,
    "client_phone": clean_phone,
    "client_language": clean_language,
    "attorney": _clean_person,
    "paralegal": _clean_person,
    "notes": _clean_notes,
}
