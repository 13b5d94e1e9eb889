"""Shared pieces of the analytics jobs' params forms.

The calendar params (a date, a datetime, a month, an ISO week) are bounded to the
platform's range (automation.input_limits) in their fields, so a form's own cross-field
rules and the job never compute with a value near the ends of the calendar. A job
receives them as `JobSpec.clean_params` returns them (ISO 8601 text); `as_date` and
`as_datetime` read them back, and pass through the objects a direct call gives.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from django import forms

from automation.input_limits import check_date

from .periods import parse_month, parse_period, period_label

LABEL_MAX_LENGTH = 32


class ParamsForm(forms.Form):
    """A params form where an explicit null means "the default", never None in the job."""

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        for name, field in self.fields.items():
            if data.get(name) in (None, "") and field.initial is not None:
                data[name] = field.initial
        return data


class PlatformDateField(forms.DateField):
    """A date (YYYY-MM-DD by default) within the platform's range."""

    def validate(self, value: date | None) -> None:
        super().validate(value)
        if value is not None:
            check_date(value, label=self.label or "date")


class PlatformDateTimeField(forms.DateTimeField):
    """An ISO 8601 datetime within the platform's range, both where it was written and
    in UTC (where clean_params stores it, so that it cleans the same again)."""

    def validate(self, value: datetime | None) -> None:
        super().validate(value)
        if value is not None:
            label = self.label or "datetime"
            check_date(value, label=label)  # first: far out, converting it would overflow
            if value.utcoffset() is not None:
                check_date(value.astimezone(UTC), label=f"{label} (in UTC)")


class _PeriodLabelField(forms.CharField):
    """A period written as a label, within the platform's range; cleaned to its canonical
    label ("" if none). Subclasses say how to read one."""

    def __init__(self, **kwargs: Any) -> None:
        # Room for a near miss ("2026-3-1"), which the parser names better than a length.
        kwargs.setdefault("max_length", LABEL_MAX_LENGTH)
        super().__init__(**kwargs)

    def canonical(self, label: str) -> str:
        raise NotImplementedError

    def clean(self, value: Any) -> str:
        label = super().clean(value)
        if not label:
            return ""
        try:
            return self.canonical(label)
        except ValueError as exc:
            raise forms.ValidationError(str(exc), code="invalid") from exc


class MonthField(_PeriodLabelField):
    """A month as YYYY-MM, such as 2026-11."""

    def canonical(self, label: str) -> str:
        return f"{parse_month(label):%Y-%m}"


class IsoWeekField(_PeriodLabelField):
    """An ISO week such as 2026-W48."""

    def canonical(self, label: str) -> str:
        return period_label(parse_period(label))


def as_date(value: date | str | None) -> date | None:
    """A date param as the job receives it: ISO text from clean_params, or a date."""
    return date.fromisoformat(value) if isinstance(value, str) else value


def as_datetime(value: datetime | str | None) -> datetime | None:
    """A datetime param as the job receives it: ISO text from clean_params, or a datetime."""
    return datetime.fromisoformat(value) if isinstance(value, str) else value
