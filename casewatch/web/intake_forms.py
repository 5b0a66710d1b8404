"""Forms of the web intake: one case, a file to import, its columns, a list of receipts.

What is valid is decided where `casewatch import` decides it (casewatch.cases.sheet);
these forms only turn its verdicts into sentences next to the right field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django import forms
from django.contrib.auth.models import User
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from casewatch.accounts.models import Firm
from casewatch.cases.queries import ASSIGNABLE, members
from casewatch.cases.sheet import COLUMNS, TARGETS, RawRow, RowResult, validate_row
from casewatch.cases.uploads import upload_limit
from casewatch.web.uploads import too_big_message

XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

# What each column of a sheet means, in the words of the page (and of the mapping menus).
COLUMN_LABELS: Mapping[str, Promise] = {
    "receipt_number": _("Receipt number"),
    "form_type": _("Form"),
    "client_id": _("Your client id"),
    "client_name": _("Client name"),
    "given_name": _("Client first name"),
    "middle_name": _("Client middle name"),
    "family_name": _("Client last name"),
    "second_family_name": _("Client second last name"),
    "client_email": _("Client e-mail"),
    "client_phone": _("Client phone"),
    "client_language": _("Client language"),
    "attorney": _("Attorney"),
    "paralegal": _("Paralegal"),
    "tags": _("Tags"),
    "notes": _("Notes"),
}

# What to say when the import's rules refuse a field typed into the one-case form.
REFUSED: Mapping[str, Promise] = {
    "receipt_number": _(
        "This is not a receipt number: a receipt number is 3 letters and 10 digits, "
        "like EAC2490012345. Leave it empty while the receipt is pending."
    ),
    "form_type": _("Not a USCIS form number casewatch recognizes (like I-485 or N-400)."),
    "client_id": _("Too long: at most 100 characters."),
    "client_name": _("A name needs letters."),
    "client_email": _("Not a valid e-mail address."),
    "client_phone": _(
        "Not a valid phone number. Write numbers outside the US with + and the country code."
    ),
    "client_language": _(
        "Not a language casewatch knows. Write a code like es or a name like Spanish."
    ),
}


class MemberChoice(forms.ModelChoiceField):  # type: ignore[type-arg]
    def label_from_instance(self, obj: Any) -> str:
        user: User = obj
        return user.get_full_name() or user.get_username()


class AddCaseForm(forms.Form):
    """One case, its receipt possibly still pending; fields named as the sheet's columns."""

    receipt_number = forms.CharField(
        label=_("Receipt number"),
        required=False,
        max_length=60,
        help_text=_("Leave it empty while USCIS has not sent the receipt yet."),
    )
    form_type = forms.CharField(
        label=_("Form"), required=False, max_length=40, help_text=_("For example I-485.")
    )
    client_name = forms.CharField(label=_("Client name"), required=False, max_length=300)
    client_id = forms.CharField(
        label=_("Your client id"),
        required=False,
        max_length=200,
        help_text=_("Your own file or matter number. A client you gave it before is reused."),
    )
    client_email = forms.CharField(
        label=_("Client e-mail"), required=False, max_length=320, widget=forms.EmailInput
    )
    client_phone = forms.CharField(
        label=_("Client phone"),
        required=False,
        max_length=60,
        widget=forms.TextInput(attrs={"type": "tel", "autocomplete": "off"}),
    )
    client_language = forms.CharField(
        label=_("Client language"),
        required=False,
        max_length=60,
        help_text=_("A code like es or a name like Spanish. Empty: English."),
    )
    attorney = MemberChoice(
        label=_("Attorney"), queryset=User.objects.none(), required=False, empty_label=_("Nobody")
    )
    paralegal = MemberChoice(
        label=_("Paralegal"), queryset=User.objects.none(), required=False, empty_label=_("Nobody")
    )
    tags = forms.CharField(
        label=_("Tags"), required=False, max_length=500, help_text=_("Separate them with commas.")
    )
    notes = forms.CharField(
        label=_("Notes"), required=False, widget=forms.Textarea(attrs={"rows": 3})
    )

    def __init__(self, firm: Firm, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name, roles in ASSIGNABLE.items():
            field = self.fields[name]
            assert isinstance(field, MemberChoice)
            field.queryset = members(firm, roles)
        for name in ("client_name", "client_email", "client_phone", "notes"):
            self.fields[name].widget.attrs.setdefault("autocomplete", "off")
        self.row: RowResult | None = None
        # Problems the import's rules report about a value they keep (say it, save anyway).
        self.kept_with_warning: list[str] = []

    # The form's parts, as the page shows them.
    GROUPS: tuple[tuple[Promise, tuple[str, ...]], ...] = (
        (_("The case"), ("receipt_number", "form_type")),
        (
            _("The client"),
            ("client_name", "client_id", "client_email", "client_phone", "client_language"),
        ),
        (_("At the firm"), ("attorney", "paralegal", "tags", "notes")),
    )

    def groups(self) -> list[tuple[Promise, list[forms.BoundField]]]:
        return [(legend, [self[name] for name in names]) for legend, names in self.GROUPS]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        values = {
            column: str(data.get(column) or "").strip()
            for column in COLUMNS
            if column not in ASSIGNABLE
        }
        row = validate_row(RawRow(1, values), receipt_required=False)
        if row.rejected:  # not a receipt number; the other fields are checked all the same
            self.add_error("receipt_number", str(REFUSED["receipt_number"]))
            row = validate_row(RawRow(1, {**values, "receipt_number": ""}), receipt_required=False)
        for error in row.errors:
            column = error.column or ""
            kept = getattr(row, column, "") if column != "receipt_number" else row.receipt_number
            if kept:
                self.kept_with_warning.append(column)
            elif column in REFUSED:
                self.add_error(column, str(REFUSED[column]))
        if not (row.receipt_number or row.client_name or row.client_id) and not self.errors:
            raise forms.ValidationError(
                _(
                    "Give the receipt number or, while it is pending, at least the client's "
                    "name or your client id."
                ),
                code="nothing",
            )
        self.row = row
        return data


class UploadForm(forms.Form):
    file = forms.FileField(
        label=_("Spreadsheet (CSV or Excel .xlsx)"),
        widget=forms.ClearableFileInput(attrs={"accept": ".csv,.xlsx,.txt,text/csv," + XLSX_TYPE}),
    )

    def clean_file(self) -> Any:
        """A file over the limit (settings.CASEWATCH_MAX_UPLOAD_BYTES) is refused; the
        upload handler usually drops it first (casewatch.cases.uploads)."""
        upload = self.cleaned_data["file"]
        if upload.size > upload_limit():
            raise forms.ValidationError(too_big_message(), code="too_big")
        return upload


NOT_IMPORTED = ""


class MappingForm(forms.Form):
    """One menu per column of the file: which of the sheet's fields it holds, if any."""

    def __init__(self, headers: tuple[str, ...], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        choices = [(NOT_IMPORTED, _("Not imported")), *((t, COLUMN_LABELS[t]) for t in TARGETS)]
        self.headers = headers
        for position, header in enumerate(headers):
            self.fields[self.field_name(position)] = forms.ChoiceField(
                label=header or _("Column %(number)s (no header)") % {"number": position + 1},
                choices=choices,
                required=False,
            )

    @staticmethod
    def field_name(position: int) -> str:
        return f"column_{position}"

    def columns(self) -> list[tuple[str, forms.BoundField]]:
        """Each column's header as the file has it (may be empty) and its menu."""
        return [(header, self[self.field_name(p)]) for p, header in enumerate(self.headers)]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        seen: dict[str, int] = {}
        for position in range(len(self.headers)):
            target = data.get(self.field_name(position)) or NOT_IMPORTED
            if target == NOT_IMPORTED:
                continue
            if target in seen:
                self.add_error(
                    self.field_name(position),
                    _("%(field)s is already chosen for another column.")
                    % {"field": COLUMN_LABELS[target]},
                )
            seen.setdefault(target, position)
        if "receipt_number" not in seen:
            raise forms.ValidationError(
                _("Choose the column that holds the receipt numbers."), code="no_receipt"
            )
        return data

    def mapping(self) -> dict[int, str]:
        return {
            position: target
            for position in range(len(self.headers))
            if (target := self.cleaned_data.get(self.field_name(position)) or NOT_IMPORTED)
        }


class ReceiptsForm(forms.Form):
    receipts = forms.CharField(
        label=_("Receipt numbers"),
        widget=forms.Textarea(attrs={"rows": 10, "spellcheck": "false", "autocomplete": "off"}),
        help_text=_(
            "One per line, or separated by commas, semicolons, tabs or spaces. Dashes, spaces "
            "and lower case are fine."
        ),
    )
