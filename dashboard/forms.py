"""The dashboard's inputs: every query-string filter and action is validated here.

A bad filter never raises: the view shows the form's message and falls back to the
default, so a hand-edited URL gives a page, not a 500. Dates are held to the platform's
range (`automation.input_limits`), so no period computed from them overflows.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from django import forms

from automation.input_limits import EARLIEST_DATE, check_date, has_control_characters
from automation.registry import all_jobs
from automation.stats import visible_jobs
from communities.lookup import CommunityNotFound, find_community
from communities.models import Community

# The summary's window choices, in the order the selector shows them.
WINDOWS: dict[str, tuple[str, timedelta]] = {
    "1h": ("last hour", timedelta(hours=1)),
    "24h": ("last 24 hours", timedelta(hours=24)),
    "7d": ("last 7 days", timedelta(days=7)),
    "30d": ("last 30 days", timedelta(days=30)),
}
DEFAULT_WINDOW = "24h"
DEFAULT_HISTORY_WINDOW = "7d"
MAX_HISTORY_DAYS = 366  # a year of daily bars is the widest chart we draw


def category_choices() -> list[tuple[str, str]]:
    categories = sorted({spec.category for spec in visible_jobs()})
    return [("", "all categories")] + [(c, c) for c in categories]


def errors_text(form: forms.Form) -> str:
    """The form's errors as one sentence per field, for a message above the page.

    Control characters echoed from the input (a NUL in a choice) are shown escaped.
    """
    parts = [
        (f"{form.fields[name].label or name}: " if name in form.fields else "")
        + " ".join(msgs).rstrip(".")
        for name, msgs in form.errors.items()
    ]
    text = "; ".join(parts) + "."
    return "".join(ascii(c)[1:-1] if has_control_characters(c) else c for c in text)


class OverviewFilter(forms.Form):
    window = forms.ChoiceField(
        choices=[(key, label) for key, (label, _) in WINDOWS.items()], required=False)
    category = forms.ChoiceField(choices=category_choices, required=False)

    def clean_window(self) -> str:
        return self.cleaned_data["window"] or DEFAULT_WINDOW


class CommunityChoice(forms.ModelChoiceField):
    def label_from_instance(self, obj: Community) -> str:
        return obj.slug if obj.is_active else f"{obj.slug} (inactive)"


def community_field(empty_label: str) -> CommunityChoice:
    return CommunityChoice(queryset=Community.objects.order_by("slug"), required=False,
                           empty_label=empty_label)


class HistoryFilter(forms.Form):
    """A preset window, or a date range (whole UTC days, both ends included)."""

    window = forms.ChoiceField(
        choices=[(key, label) for key, (label, _) in WINDOWS.items()], required=False)
    community = community_field("all communities")
    start = forms.DateField(required=False, label="from",
                            widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(required=False, label="to",
                          widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args, today: date, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.today = today

    def clean_start(self) -> date | None:
        start = self.cleaned_data["start"]
        return None if start is None else check_date(start)

    def clean_end(self) -> date | None:
        end = self.cleaned_data["end"]
        return None if end is None else check_date(end)

    def clean(self) -> dict:
        data = super().clean()
        if self.errors:  # a refused date is missing from data: do not fill it in
            return data
        start, end = data.get("start"), data.get("end")
        if start is None and end is None:
            return data
        if start is None:
            start = max(EARLIEST_DATE, end - timedelta(days=6))
        if end is None:
            end = self.today
        if end < start:
            raise forms.ValidationError("The range ends before it starts.")
        if (end - start).days + 1 > MAX_HISTORY_DAYS:
            raise forms.ValidationError(f"Choose at most {MAX_HISTORY_DAYS} days.")
        data["start"], data["end"] = start, end
        return data

    def period(self, now: datetime) -> tuple[datetime, datetime]:
        """[since, until) of a valid form; the default window when nothing was chosen."""
        data = self.cleaned_data
        if data.get("start") is not None:
            since = datetime.combine(data["start"], time.min, tzinfo=UTC)
            until = datetime.combine(data["end"] + timedelta(days=1), time.min, tzinfo=UTC)
            return since, until
        return now - WINDOWS[data.get("window") or DEFAULT_HISTORY_WINDOW][1], now


class ActionForm(forms.Form):
    """One operator action on one job, for one community or all of them."""

    ENABLE, DISABLE, RUN = "enable", "disable", "run"

    job = forms.ChoiceField(choices=lambda: [(s.name, s.name) for s in all_jobs()])
    op = forms.ChoiceField(choices=[(ENABLE, "Enable"), (DISABLE, "Disable"), (RUN, "Run now")],
                           label="action")
    # Typed or picked from one shared <datalist>: a <select> per job row would repeat
    # every community in every row, which does not scale to thousands of tenants.
    community = forms.CharField(required=False, max_length=100,
                                help_text="slug or id; empty for all communities")
    next = forms.CharField(required=False, max_length=2000)

    def clean_community(self) -> Community | None:
        reference = self.cleaned_data["community"].strip()
        if not reference:
            return None
        try:
            return find_community(reference)
        except CommunityNotFound as exc:
            raise forms.ValidationError(str(exc)) from exc
