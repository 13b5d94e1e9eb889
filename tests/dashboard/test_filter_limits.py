"""Extreme and malformed values in every input the dashboard reads: a message, never a 500.

The pages answer 200 with "Filter ignored — …" and their default figures (the pattern of
test_views.py and test_history.py); the action answers with "Nothing done — …" and changes
nothing. The test client re-raises a view's exception, so a crash fails here as itself.
"""

from __future__ import annotations

import itertools
import re

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from automation.input_limits import RANGE_TEXT
from automation.models import AuditEntry, CommunityAutomationSetting, JobRun
from communities.models import Community

from .helpers import case, logged_in, report, same_login

pytestmark = pytest.mark.django_db
DASH = "/admin/dashboard/"
HISTORY = "/admin/dashboard/jobs/webhook_health_monitor/"

# Values a hand-edited or hostile URL may carry.
EXTREMES = [
    "0001-01-01", "9999-12-31", "9999-12-31T23:59:59", "1999-12-31", "2100-01-01",
    "0000-00-00", "-1", "0", "9" * 40, "1e309", "NaN", "garbage", "\x00", "2026-01-01\x00",
    "\x01\x7f", "²", "<script>", " ", "x" * 5000,
]
# Each page and the GET parameters it reads.
PAGES = {DASH: ["window", "category"], HISTORY: ["window", "community", "start", "end"]}


def shown(value: object) -> str:
    """A short, printable label for a parameter value."""
    text = ascii(value)[1:-1] if isinstance(value, str) else str(value)
    return text if len(text) <= 24 else f"{text[:12]}…({len(text)} chars)"


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


def state() -> tuple:
    """What an action could change: settings' switches, runs, the audit trail."""
    return (sorted(CommunityAutomationSetting.objects.values_list("pk", "enabled")),
            JobRun.objects.count(), AuditEntry.objects.count())


def test_every_filter_survives_extreme_values(admin_user: User, community: Community) -> None:
    """Each parameter of each page, alone: the page, with a message if the value is refused.

    Every (page, parameter, value) is a case of its own (a fresh client, Redis flushed, the
    database rolled back after it); the failures are collected and named together.
    """
    admin = logged_in(admin_user)
    failures: list[str] = []
    cases = [(url, name, value) for url, names in PAGES.items()
             for name, value in itertools.product(names, EXTREMES)]
    for url, name, value in cases:
        with case(f"GET {url}?{name}={shown(value)}", failures):
            response = same_login(admin).get(url, {name: value})
            assert response.status_code == 200
            refused = messages_of(response)
            assert len(refused) <= 1, refused
            if refused:
                assert refused[0].startswith("Filter ignored — "), refused
                assert "\x00" not in refused[0]  # control characters are echoed escaped
    assert not failures, report(failures, len(cases))


@pytest.mark.parametrize("query, expected", [
    ({"end": "0001-01-01"}, f"to: date 0001-01-01 is out of range; dates must be {RANGE_TEXT}."),
    ({"start": "0001-01-01"}, f"from: date 0001-01-01 is out of range; dates must be "
                              f"{RANGE_TEXT}."),
    ({"start": "9999-12-31", "end": "9999-12-31"},
     f"from: date 9999-12-31 is out of range; dates must be {RANGE_TEXT}; "
     f"to: date 9999-12-31 is out of range; dates must be {RANGE_TEXT}."),
    ({"start": "2100-01-01"}, "from: date 2100-01-01 is out of range"),
    ({"end": "1999-12-31"}, "to: date 1999-12-31 is out of range"),
    ({"start": "9999-12-31T23:59:59"}, "from: Enter a valid date."),
    ({"start": "\x00"}, "from: Enter a valid date."),
    ({"community": "\x00"}, "community: Null characters are not allowed."),
    ({"community": "9" * 40}, "community: Select a valid choice."),
    ({"window": "\x00"}, "window: Select a valid choice. \\x00 is not one of the available"),
])
def test_out_of_range_and_malformed_history_filters_are_named(
        admin_client: Client, query: dict, expected: str) -> None:
    """The message says which filter was refused and, for dates, the range accepted."""
    response = admin_client.get(HISTORY, query)
    assert response.status_code == 200
    [message] = messages_of(response)
    assert message.startswith("Filter ignored — ") and expected in message
    assert 'data-window="7d" class="ops-active"' in response.content.decode()  # the default


@pytest.mark.parametrize("query", [
    {"start": "2000-01-01", "end": "2000-01-01"},
    {"end": "2000-01-03"},  # the week before it would start in 1999: held to the range
    {"start": "2099-12-31", "end": "2099-12-31"},  # its end is the first hour of 2100
    {"start": "2099-01-01", "end": "2099-12-31"},
])
def test_dates_at_the_ends_of_the_range_are_shown(admin_client: Client, query: dict) -> None:
    """The first and last days of the range are valid filters and draw their chart."""
    response = admin_client.get(HISTORY, query)
    assert response.status_code == 200
    assert messages_of(response) == []
    page = response.content.decode()
    first = re.search(r'<g class="bar" data-start="([^"]+)"', page).group(1)
    assert first.startswith(query.get("start", "2000-01-01"))


def test_refused_end_is_not_completed_into_a_range(admin_client: Client) -> None:
    """A valid start beside a refused end is one error, not also "ends before it starts"."""
    response = admin_client.get(HISTORY, {"start": "2026-01-01", "end": "0001-01-01"})
    [message] = messages_of(response)
    assert "to: date 0001-01-01 is out of range" in message
    assert "ends before it starts" not in message


def test_running_fragment_ignores_any_query(admin_client: Client) -> None:
    """The banner reads no parameter: junk in its URL changes nothing."""
    for value in EXTREMES:
        response = admin_client.get(reverse("admin:dashboard_running"), {"window": value,
                                                                          "start": value})
        assert response.status_code == 200
        assert 'data-figure="running-count">0<' in response.content.decode()


def test_action_fields_with_extreme_values_change_nothing_wrongly(
        admin_user: User, community: Community) -> None:
    """Each action field, alone made extreme, in a disable that is otherwise valid: refused
    with a message (nothing changed), or — for a `next` that is merely off-site or odd —
    done and sent back to the dashboard. Each (field, value) is a case of its own, as above:
    the setting is enabled again when the next case starts. The valid `next` is the history
    page, whose action forms send it (and which is quicker to follow than the overview)."""
    admin = logged_in(admin_user)
    failures: list[str] = []
    cases = list(itertools.product(["job", "op", "community", "next"], EXTREMES))
    for name, value in cases:
        with case(f"POST {name}={shown(value)}", failures):
            client = same_login(admin)
            before = state()
            data = {"job": "test_sleep", "op": "disable", "community": community.slug,
                    "next": HISTORY, name: value}
            response = client.post(reverse("admin:dashboard_action"), data)
            assert response.status_code == 302
            location = response["Location"]
            assert location.startswith("/") and not location.startswith("//"), location
            assert not any(ord(c) < 32 for c in location), location
            follow = client.get(location) if location.startswith(DASH) else None
            assert follow is None or follow.status_code == 200, follow
            told = messages_of(follow) if follow is not None else []
            if state() == before:
                assert told and told[0].startswith("Nothing done — "), told
                assert "\x00" not in told[0]
            else:  # the only field that may be odd and still valid is where to go back to
                assert name == "next" or (name == "community" and value == " "), told
                assert not CommunityAutomationSetting.objects.get(community=community,
                                                                 job_name="test_sleep").enabled
    assert not failures, report(failures, len(cases))


def test_action_names_the_refused_field(admin_client: Client, community: Community) -> None:
    """NUL and unknown communities are named in the message, escaped."""
    response = admin_client.post(reverse("admin:dashboard_action"), {
        "job": "test_sleep", "op": "run", "community": "\x00"}, follow=True)
    [message] = messages_of(response)
    assert message == "Nothing done — community: Null characters are not allowed."
    response = admin_client.post(reverse("admin:dashboard_action"), {
        "job": "test_sleep", "op": "run", "community": "9" * 40}, follow=True)
    [message] = messages_of(response)
    assert message == f"Nothing done — community: no community with id or slug '{'9' * 40}'."
    assert not JobRun.objects.exists()
