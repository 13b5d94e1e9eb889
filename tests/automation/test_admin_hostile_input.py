"""Admin forms answer hostile values with a form error, never a server error.

Every field of the community change form and of its job-settings inline gets each value
below; the page must come back (200 with errors, or 302 when the value is acceptable) and
nothing invalid may be stored.
"""

import pytest
from django.test import Client
from django.urls import reverse

from communities.models import Community
from tests.automation.test_admin import inline_data

pytestmark = pytest.mark.django_db(transaction=True)

HOSTILE = [
    "a\x00b", "\x1b[31mred", "9" * 40, "-1", "0001-01-01", "9999-12-31T23:59:59",
    "x" * 5000, '{"a": "\\u0000"}', "[" * 5000 + "]" * 5000, '{"start": 12345}',
    '{"batch_size": 99999999999999999999999}', "null", "[]", '"text"', "NaN", "1e400",
]
COMMUNITY_FIELDS = ["name", "slug", "timezone", "member_retention_days",
                    "content_retention_days"]
SETTING_FIELDS = ["cron_override", "params"]


def test_hostile_values_in_the_community_form_are_form_errors(
    admin_client: Client, community: Community
) -> None:
    """Each value goes into every field at once: the form and each inline row are checked
    on their own, so a field that fails on it still answers with a server error."""
    url = reverse("admin:communities_community_change", args=[community.pk])
    failures = []
    for value in HOSTILE:
        row = dict.fromkeys(SETTING_FIELDS, value)
        data = inline_data(community, daily_community_digest=row, test_sleep=row)
        data.update(dict.fromkeys(COMMUNITY_FIELDS, value))
        status = admin_client.post(url, data).status_code
        if status not in (200, 302):
            failures.append(f"{value[:30]!r}: {status}")
    assert failures == []
    stored = Community.objects.get(pk=community.pk)
    assert "\x00" not in stored.name and "\x00" not in stored.slug
    for setting in stored.automation_settings.all():
        assert "\x00" not in setting.cron_override
