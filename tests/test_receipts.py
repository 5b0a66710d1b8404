"""Receipt numbers: what people type becomes what USCIS accepts, or a clear refusal."""

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from casewatch.core.receipts import (
    InvalidReceipt,
    normalize_receipt,
    parse_receipt,
    split_receipt_list,
)

letters = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=3, max_size=3)
digits = st.text(alphabet="0123456789", min_size=10, max_size=10)
receipts = st.builds(lambda a, b: a + b, letters, digits)
noise = st.sampled_from(["", " ", "-", "*", " - ", "\t", "–", "\u00a0", "  "])


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("EAC9999103403", "EAC9999103403"),
        ("eac9999103403", "EAC9999103403"),
        ("lin-9999-106498", "LIN9999106498"),
        (" SRC 99 991 02777 ", "SRC9999102777"),
        ("*IOE0912345678*", "IOE0912345678"),
        ("EAC–24–901–23456", "EAC2490123456"),
        ("Msc\u00a02190012345", "MSC2190012345"),
    ],
)
def test_what_people_type_is_normalized(typed: str, expected: str) -> None:
    assert parse_receipt(typed).number == expected


@pytest.mark.parametrize(
    ("typed", "says"),
    [
        ("", "empty"),
        ("EAC99991034", "13 characters"),
        ("EAC99991034030", "13 characters"),
        ("1234567890123", "3 letters"),
        ("EAC999910340O", "10 digits"),
        ("ÉAC9999103403", "3 letters"),
    ],
)
def test_malformed_receipts_are_refused_with_a_reason(typed: str, says: str) -> None:
    with pytest.raises(InvalidReceipt, match=says):
        parse_receipt(typed)


def test_unknown_prefix_is_a_warning_not_an_error() -> None:
    receipt = parse_receipt("ABC1234567890")
    assert receipt.office is None
    assert any("ABC" in w for w in receipt.warnings)


def test_service_center_digits_decode_to_fiscal_year_and_workday() -> None:
    receipt = parse_receipt("LIN2410012345")
    assert receipt.office == "Nebraska Service Center"
    assert (receipt.fiscal_year, receipt.workday, receipt.serial) == (2024, 100, 12345)
    assert not receipt.lockbox
    # Workday 100 of FY2024 (which began 2 October 2023, a Monday) is a weekday in February.
    received = receipt.approx_received_on
    assert received is not None and received.weekday() < 5
    assert date(2024, 2, 1) <= received <= date(2024, 2, 29)


def test_lockbox_receipts_carry_a_nine_after_the_fiscal_year() -> None:
    receipt = parse_receipt("IOE0912345678")
    assert receipt.is_elis and receipt.fiscal_year is None
    lockbox = parse_receipt("MSC2190512345")
    assert lockbox.lockbox and lockbox.fiscal_year == 2021 and lockbox.workday == 51
    assert lockbox.serial == 2345


def test_first_workday_is_first_weekday_of_october() -> None:
    assert parse_receipt("EAC2500112345").approx_received_on == date(2024, 10, 1)


@given(st.integers(0, 99), st.integers(1, 366))
def test_workday_n_is_the_nth_weekday_from_1_october(year: int, workday: int) -> None:
    received = parse_receipt(f"EAC{year:02d}{workday:03d}12345").approx_received_on
    day, weekdays = date(2000 + year - 1, 10, 1), 0
    while True:  # counted out one day at a time
        if day.weekday() < 5:
            weekdays += 1
            if weekdays == workday:
                break
        day += timedelta(days=1)
    assert received == day


@given(receipts, st.lists(noise, min_size=14, max_size=14), st.booleans())
def test_any_valid_receipt_survives_noise_and_case(
    receipt: str, gaps: list[str], lower: bool
) -> None:
    typed = "".join(g + c for g, c in zip(gaps, receipt + " ", strict=False))
    if lower:
        typed = typed.lower()
    assert parse_receipt(typed).number == receipt


@given(st.text(max_size=40))
def test_parsing_never_crashes_and_accepts_only_the_pattern(text: str) -> None:
    try:
        receipt = parse_receipt(text)
    except InvalidReceipt as exc:
        assert str(exc)
    else:
        assert re.fullmatch(r"[A-Z]{3}\d{10}", receipt.number)
        assert receipt.number == normalize_receipt(text)


@given(receipts)
def test_formatting_round_trips(receipt: str) -> None:
    assert parse_receipt(parse_receipt(receipt).formatted()).number == receipt


def test_pasted_lists_split_into_receipts() -> None:
    text = (
        "# my cases\nEAC9999103403, lin-9999-106498\n\n"
        "SRC 99 991 02777\nEAC9999103404 EAC9999103405\n"
    )
    assert split_receipt_list(text) == [
        "EAC9999103403",
        "lin-9999-106498",
        "SRC 99 991 02777",
        "EAC9999103404",
        "EAC9999103405",
    ]
