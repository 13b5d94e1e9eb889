"""Admin forms answer hostile values with a form error, never a server error.

The walk derives what it posts from the site itself: every ModelAdmin registered on
`admin.site` whose add or change view the superuser may use, on a sample row of each model
(the `rows` fixture of test_admin_permissions). The body of each POST is the rendered
form's own (its initial values, management forms of the inlines included), with one
hostile value put into every editable field of the form and of every inline row at once:
Django cleans each field on its own, so one POST per value covers every field. The answer
must be 200 (the form with its errors) or 302 (the value was acceptable).

Each POST runs in a savepoint rolled back after it. A failing POST is then retried field
by field, so each failure names the field that causes it.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.admin import AdminSite, ModelAdmin
from django.contrib.admin.utils import quote
from django.contrib.auth.models import User
from django.db import models
from django.template import Template
from django.test import Client, RequestFactory
from django.test.utils import _TestState
from django.urls import reverse

from tests.automation.test_admin_permissions import rows  # noqa: F401 (a fixture)
from tests.dashboard.helpers import case, report, same_login

pytestmark = pytest.mark.django_db
site: AdminSite = admin.site

# One value per class (each POST re-renders every form, so values are the walk's cost):
# control characters, out-of-range numbers, the calendar's ends, long text, JSON holding
# NUL and JSON too deep to parse recursively. The API and params tests try many more.
HOSTILE = [
    "a\x00b", "9" * 40, "-1", "0001-01-01", "9999-12-31 23:59:59", "x" * 5000,
    '{"a": "\\u0000"}', "[" * 5000 + "]" * 5000,
]
# Fields whose hostile value would only change what is validated, not test a value: a
# row marked for deletion is not cleaned at all.
SKIPPED = {"DELETE"}
DATE_SHAPED = re.compile(r"\d{4}-\d\d-\d\d")


class FormFields(HTMLParser):
    """The name/value pairs a browser would submit from the page's change form."""

    def __init__(self, form_id: str) -> None:
        super().__init__(convert_charrefs=True)
        self.form_id = form_id
        self.inside = False
        self.data: dict[str, list[str]] = {}
        self.select: str | None = None
        self.textarea: str | None = None

    def add(self, name: str | None, value: str | None) -> None:
        if name and "__prefix__" not in name:  # the inlines' blank template rows
            self.data.setdefault(name, []).append(value or "")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        if tag == "form":
            self.inside = attr.get("id") == self.form_id
        if not self.inside:
            return
        name = attr.get("name")
        if tag == "input":
            kind = (attr.get("type") or "text").lower()
            if kind in ("submit", "button", "reset", "file", "image"):
                return
            if kind in ("checkbox", "radio") and "checked" not in attr:
                return
            self.add(name, attr.get("value", "on" if kind == "checkbox" else ""))
        elif tag == "select":
            self.select = name
        elif tag == "option" and self.select and "selected" in attr:
            self.add(self.select, attr.get("value"))
        elif tag == "textarea" and name and "__prefix__" not in name:
            self.textarea = name
            self.add(name, "")

    def handle_data(self, data: str) -> None:
        if self.inside and self.textarea:
            values = self.data[self.textarea]
            values[-1] += data.removeprefix("\n") if values[-1] == "" else data

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.inside = False
        elif tag == "select":
            self.select = None
        elif tag == "textarea":
            self.textarea = None


def rendered_data(client: Client, url: str, model: type[models.Model]) -> dict[str, list[str]]:
    response = client.get(url)
    assert response.status_code == 200, f"GET {response.status_code}"
    parser = FormFields(f"{model._meta.model_name}_form")
    parser.feed(response.content.decode())
    assert parser.data, "no form found on the page"
    return parser.data


def editable_fields(model_admin: ModelAdmin, request: Any, obj: models.Model | None,
                    data: dict[str, list[str]]) -> list[str]:
    """The POST names of every editable field: the form's and each inline row's."""
    names = [name for name in model_admin.get_form(request, obj)().fields if name not in SKIPPED]
    used: dict[str, int] = {}
    for formset_class, _inline in model_admin.get_formsets_with_inlines(request, obj):
        prefix = formset_class.get_default_prefix()  # numbered as the admin does
        used[prefix] = used.get(prefix, 0) + 1
        if used[prefix] > 1:
            prefix = f"{prefix}-{used[prefix]}"
        total = int(data[f"{prefix}-TOTAL_FORMS"][0])
        row_fields = formset_class(instance=obj, prefix=prefix).empty_form.fields
        names += [f"{prefix}-{i}-{name}" for i in range(total) for name in row_fields
                  if name not in SKIPPED]
    return names


def with_value(data: dict[str, list[str]], fields: list[str], value: str
               ) -> dict[str, list[str]]:
    """`data` with `value` in each of `fields`; a split widget (date and time) gets a
    date-shaped value in its date part and keeps a valid time, any other in every part."""
    hostile = dict(data)
    for name in fields:
        parts = sorted(key for key in data if re.fullmatch(rf"{re.escape(name)}_\d+", key))
        if not parts:
            hostile[name] = [value]
            continue
        if DATE_SHAPED.match(value):
            date, _, time = value.partition(" ")
            hostile[parts[0]] = [date]
            for part in parts[1:]:
                hostile[part] = [time or (data[part][0] or "00:00:00")]
        else:
            for part in parts:
                hostile[part] = [value]
    return hostile


def attempt(client: Client, url: str, data: dict[str, list[str]]) -> str | None:
    """What went wrong posting `data` (in a savepoint rolled back), or None."""
    found: list[str] = []
    with case("", found):
        status = client.post(url, data).status_code
        assert status in (200, 302), f"status {status}"
    return found[0].removeprefix(": ") if found else None


def test_every_admin_form_answers_hostile_values_with_a_form_error(
        rows: dict[type[models.Model], models.Model], admin_client: Client,  # noqa: F811
        admin_user: User, monkeypatch: pytest.MonkeyPatch) -> None:
    # The test client's record of every template rendered (a copy of each context) costs
    # a fifth of the walk and nothing here reads it: pages render as in production.
    monkeypatch.setattr(Template, "_render", _TestState.saved_data.template_render)
    request = RequestFactory().get("/")
    request.user = admin_user
    failures: list[str] = []
    walked = 0
    views = []
    for model, model_admin in site._registry.items():
        info = f"admin:{model._meta.app_label}_{model._meta.model_name}"
        if model_admin.has_add_permission(request):
            views.append((model, model_admin, None, reverse(f"{info}_add")))
        obj = rows[model] if model in rows else model.objects.first()
        if model_admin.has_change_permission(request, obj):
            views.append((model, model_admin, obj,
                          reverse(f"{info}_change", args=[quote(obj.pk)])))
    assert len(views) > 10, "the walk walks (almost) nothing"
    for model, model_admin, obj, url in views:
        label = f"{model._meta.label} {'change' if obj else 'add'}"
        client = same_login(admin_client)
        page: list[str] = []
        with case(label, page):
            data = rendered_data(client, url, model)
            fields = editable_fields(model_admin, request, obj, data)
        if page:
            failures += page
            continue
        for value in HOSTILE:
            walked += 1
            if attempt(client, url, with_value(data, fields, value)) is None:
                continue
            culprits = [(field, attempt(client, url, with_value(data, [field], value)))
                        for field in fields]
            culprits = [(field, problem) for field, problem in culprits if problem]
            if not culprits:  # only the combination fails
                culprits = [("<all fields>",
                             attempt(client, url, with_value(data, fields, value)))]
            failures += [f"{label} {field}={value[:30]!r}: {problem}"
                         for field, problem in culprits]
    assert not failures, report(failures, walked)
