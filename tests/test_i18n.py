"""The staff app in English and Spanish: complete catalogs, shipped compiled, chosen from
the browser or by the member, with dates and numbers written the local way."""

from __future__ import annotations

import gettext
import re
import shutil
import subprocess
import tomllib
from datetime import UTC, datetime
from fnmatch import fnmatch
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client as Browser

from casewatch.accounts.models import Firm, Membership, Role
from tests.environment import sign_in
from tests.test_web import _member, _rfe_case

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "casewatch"
CATALOG = PACKAGE / "locale" / "es" / "LC_MESSAGES" / "django.po"
COMPILED = CATALOG.with_suffix(".mo")
SPANISH = "es-MX,es;q=0.9,en;q=0.5"


def _gettext_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (Debian package gettext)")
    return path


def _catalog(mo: Path) -> dict[Any, str]:
    with mo.open("rb") as handle:
        catalog: dict[Any, str] = gettext.GNUTranslations(handle)._catalog  # type: ignore[attr-defined]
    return {key: value for key, value in catalog.items() if key != ""}


# --- The catalog -------------------------------------------------------------------


def test_every_message_in_the_spanish_catalog_has_a_checked_translation() -> None:
    result = subprocess.run(
        [_gettext_tool("msgfmt"), "--check", "--statistics", "-o", "/dev/null", str(CATALOG)],
        capture_output=True,
        text=True,
        check=False,
        env={"LC_ALL": "C"},
    )
    assert result.returncode == 0, result.stderr
    # Anything fuzzy or untranslated would be counted on this line too.
    assert re.fullmatch(r"\d+ translated messages?\.\n", result.stderr), result.stderr


def test_the_shipped_compiled_catalog_is_the_catalog(tmp_path: Path) -> None:
    fresh = tmp_path / "django.mo"
    subprocess.run([_gettext_tool("msgfmt"), "--check", "-o", str(fresh), str(CATALOG)], check=True)
    assert _catalog(COMPILED) == _catalog(fresh), (
        "django.mo is stale: cd casewatch && django-admin compilemessages -l es"
    )


def test_every_string_marked_for_translation_is_in_the_catalog(
    tmp_path: Path, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _gettext_tool("xgettext")
    source = tmp_path / "casewatch"
    shutil.copytree(PACKAGE, source, ignore=shutil.ignore_patterns("__pycache__", "locale"))
    settings.LOCALE_PATHS = [tmp_path / "extracted"]
    monkeypatch.chdir(source)
    call_command("makemessages", locale=["es"], verbosity=0)
    extracted = tmp_path / "extracted" / "es" / "LC_MESSAGES" / "django.po"
    as_english = tmp_path / "english.po"
    subprocess.run([_gettext_tool("msgen"), "-o", str(as_english), str(extracted)], check=True)
    compiled = tmp_path / "english.mo"
    subprocess.run([_gettext_tool("msgfmt"), "-o", str(compiled), str(as_english)], check=True)
    missing = set(_catalog(compiled)) - set(_catalog(COMPILED))
    assert not missing, (
        "not in the Spanish catalog (cd casewatch && django-admin makemessages -l es "
        f"--no-obsolete, translate, compilemessages): {sorted(map(str, missing))}"
    )


def test_the_package_ships_the_catalogs() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = pyproject["tool"]["setuptools"]["package-data"]["*"]
    for path in (CATALOG, COMPILED):
        relative = path.relative_to(PACKAGE).as_posix()
        assert any(fnmatch(relative, pattern) for pattern in patterns), relative


# --- Pages in Spanish --------------------------------------------------------------


VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}


class _Words(HTMLParser):
    """What a person reads on a page in its language: text and the labels of controls.

    Left out: markup, and what the page marks as another language (`lang="en"` around
    USCIS's own English text, each language's name in the language switcher).
    """

    def __init__(self, language: str) -> None:
        super().__init__()
        self.language = language
        self.parts: list[str] = []
        self._open: list[bool] = []  # per open element: is its content left out?

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        lang = values.get("lang") or self.language
        skip = (self._open[-1] if self._open else False) or tag in ("script", "style")
        skip = skip or (tag != "html" and not lang.startswith(self.language))
        if not skip:
            for name in ("placeholder", "aria-label", "title", "alt"):
                if values.get(name):
                    self.parts.append(str(values[name]))
        if tag not in VOID:
            self._open.append(skip)

    def handle_endtag(self, tag: str) -> None:
        if tag not in VOID and self._open:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        if not (self._open and self._open[-1]):
            self.parts.append(data)


def _readable(html: str, language: str = "es") -> str:
    parser = _Words(language)
    parser.feed(html)
    return " ".join(" ".join(parser.parts).split())


def _english_left(html: str) -> list[str]:
    """Every English message of the catalog that shows on the page untranslated."""
    text = _readable(html)
    left = []
    for key, spanish in _catalog(COMPILED).items():
        english = key[0] if isinstance(key, tuple) else key
        for fragment in re.split(r"%\(\w+\)s|<[^>]+>", english):
            fragment = fragment.strip(" .,:;?()")
            if len(fragment) < 3 or fragment in spanish:
                continue
            if re.search(rf"(?<!\w){re.escape(fragment)}(?!\w)", text):
                left.append(fragment)
    return left


@pytest.fixture
def firm() -> Firm:
    return Firm.objects.create(name="Example Immigration Law", slug="example")


@pytest.mark.django_db
def test_a_browser_that_prefers_spanish_gets_the_login_page_in_spanish() -> None:
    page = Browser().get("/login/", headers={"accept-language": SPANISH})
    html = page.content.decode()
    assert page.headers["Content-Language"] == "es"
    assert '<html lang="es">' in html
    assert "Iniciar sesión" in html and "Contraseña" in html and "¿Olvidó su contraseña?" in html
    assert _english_left(html) == []
    english = Browser().get("/login/", headers={"accept-language": "en-US,en;q=0.9"})
    assert "Forgot your password?" in english.content.decode()
    assert "Log in" in _english_left(english.content.decode())  # the check does see English


@pytest.mark.django_db
def test_the_spanish_case_list_and_case_page_have_no_english_left(firm: Firm) -> None:
    from casewatch.monitor.health import note_outcome

    case = _rfe_case(firm)
    note_outcome(None, datetime(2026, 3, 2, 15, 0, tzinfo=UTC))
    browser = Browser()
    sign_in(browser, _member(firm, "paula", Role.PARALEGAL))
    for url in ("/cases/", f"/cases/{case.pk}/", "/welcome/", "/account/"):
        html = browser.get(url, headers={"accept-language": SPANISH}).content.decode()
        assert _english_left(html) == [], url
    listing = browser.get("/cases/", headers={"accept-language": SPANISH}).content.decode()
    assert "Evidencia solicitada" in listing and "Se Envió una Solicitud de Evidencia" in listing


@pytest.mark.django_db
def test_the_spanish_team_page_and_password_pages_have_no_english_left(firm: Firm) -> None:
    admin = Browser()
    sign_in(admin, _member(firm, "olga", Role.ADMIN))
    pages = [admin.get("/team/", headers={"accept-language": SPANISH})]
    pages.append(Browser().get("/password/reset/", headers={"accept-language": SPANISH}))
    for page in pages:
        assert _english_left(page.content.decode()) == [], page.request["PATH_INFO"]


# --- Choosing a language -----------------------------------------------------------


@pytest.mark.django_db
def test_a_member_who_chose_spanish_gets_spanish_whatever_the_browser_says(firm: Firm) -> None:
    _rfe_case(firm)
    user = _member(firm, "paula", Role.PARALEGAL)
    Membership.objects.filter(user=user).update(language="es")
    browser = Browser()
    sign_in(browser, user)
    html = browser.get("/cases/", headers={"accept-language": "en-US"}).content.decode()
    assert "Casos" in html and "Cerrar sesión" in html
    assert _english_left(html) == []


@pytest.mark.django_db
def test_the_language_buttons_switch_and_remember_the_choice(firm: Firm) -> None:
    user = _member(firm, "paula", Role.PARALEGAL)
    browser = Browser()
    sign_in(browser, user)
    page = browser.get("/cases/").content.decode()
    assert 'name="language" value="es"' in page and 'action="/language/"' in page

    switched = browser.post("/language/", {"language": "es", "next": "/cases/?q=EAC"})
    assert switched.status_code == 302 and switched["Location"] == "/cases/?q=EAC"
    assert Membership.objects.get(user=user).language == "es"
    other_device = Browser()
    sign_in(other_device, user)
    assert "Casos" in other_device.get("/cases/").content.decode()

    back = browser.post("/language/", {"language": "en", "next": "https://evil.test/"})
    assert back["Location"] == "/"  # only addresses on this site
    assert Membership.objects.get(user=user).language == "en"
    assert browser.post("/language/", {"language": "xx"}).status_code == 400


@pytest.mark.django_db
def test_anyone_may_switch_the_login_page_to_spanish() -> None:
    browser = Browser()
    browser.post("/language/", {"language": "es", "next": "/login/"})
    assert "Iniciar sesión" in browser.get("/login/").content.decode()


@pytest.mark.django_db
def test_logging_in_switches_to_the_members_language(firm: Firm) -> None:
    user = _member(firm, "paula", Role.PARALEGAL)
    Membership.objects.filter(user=user).update(language="es")
    browser = Browser()
    page = browser.post(
        "/login/", {"username": "paula", "password": "correct horse battery"}, follow=True
    )
    assert "Añada sus primeros casos" in page.content.decode()
    assert browser.cookies["django_language"].value == "es"
    browser.post("/logout/")
    assert "Iniciar sesión" in browser.get("/login/").content.decode()


# --- Dates and numbers -------------------------------------------------------------


@pytest.mark.django_db
def test_dates_and_numbers_are_written_the_way_each_language_writes_them(firm: Firm) -> None:
    case = _rfe_case(firm)
    browser = Browser()
    sign_in(browser, _member(firm, "paula", Role.PARALEGAL))
    english = browser.get(f"/cases/{case.pk}/", headers={"accept-language": "en"})
    spanish = browser.get(f"/cases/{case.pk}/", headers={"accept-language": "es"})
    assert "May 28, 2026" in english.content.decode()
    assert "28 de mayo de 2026" in spanish.content.decode()
    assert "87 days after the notice of March 2, 2026" in english.content.decode()
    assert "87 días después del aviso del 2 de marzo de 2026" in spanish.content.decode()

    english_list = browser.get("/cases/", headers={"accept-language": "en"}).content.decode()
    spanish_list = browser.get("/cases/", headers={"accept-language": "es"}).content.decode()
    assert "0 of 10,000 USCIS calls used today." in english_list
    assert "de 10\xa0000 consultas a USCIS" in spanish_list
    assert "03/02/2026" in english_list and "02/03/2026" in spanish_list
