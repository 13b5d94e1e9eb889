"""Shared pieces of the analytics jobs' params forms."""

from __future__ import annotations

from typing import Any

from django import forms


class ParamsForm(forms.Form):
    """A params form where an explicit null means "the default", never None in the job."""

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        for name, field in self.fields.items():
            if data.get(name) in (None, "") and field.initial is not None:
                data[name] = field.initial
        return data
