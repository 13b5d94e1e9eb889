"""Admin pages of the notifications models, and the demo seed."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime

import pytest
from django.test import Client
from django.urls import reverse

from communities.models import Member
from notifications import demo
from notifications.models import (
    DigestDelivery,
    EmailBounce,
    EmailSuppression,
    Notification,
    PushDevice,
)

from .conftest import make_member

NOW = datetime(2026, 7, 1, 16, 0, tzinfo=UTC)


@pytest.fixture
def rows(community):
    bob = make_member(community, "bob")
    Notification.objects.create(community=community, member=bob, kind="billing.dunning",
                                dedup_key="k", subject="s", body="b", status="failed")
    bounce = EmailBounce.objects.create(community=community, member=bob, email=bob.email,
                                        kind="hard", smtp_code=550, message="no such user")
    EmailSuppression.objects.create(email=bob.email, community=community, bounce=bounce)
    PushDevice.objects.create(member=bob, token="t-1", is_active=False)
    DigestDelivery.objects.create(community=community, member=bob, local_date=date(2026, 7, 1),
                                  channel="email", slot=NOW, status="failed", attempts=3)
    return bob


@pytest.mark.parametrize("model", ["notification", "emailbounce", "emailsuppression",
                                   "pushdevice", "digestdelivery"])
def test_changelists_render(admin_client: Client, rows, model: str) -> None:
    url = reverse(f"admin:notifications_{model}_changelist")
    response = admin_client.get(url)
    assert response.status_code == 200
    assert "bob@acme.example" in response.content.decode() or model == "pushdevice"
    assert admin_client.get(url, {"q": "bob"}).status_code == 200


def test_notification_filters_and_requeue(admin_client: Client, rows,
                                          django_capture_on_commit_callbacks) -> None:
    url = reverse("admin:notifications_notification_changelist")
    page = admin_client.get(url, {"status__exact": "failed", "channel__exact": "email"})
    assert "billing.dunning" in page.content.decode()
    notification = Notification.objects.get()
    with django_capture_on_commit_callbacks() as callbacks:
        admin_client.post(url, {"action": "requeue", "_selected_action": [notification.pk]})
    notification.refresh_from_db()
    assert (notification.status, notification.attempts) == ("pending", 0)
    assert len(callbacks) == 1


def test_ledger_allow_retry_and_device_reactivate(admin_client: Client, rows) -> None:
    row = DigestDelivery.objects.get()
    admin_client.post(reverse("admin:notifications_digestdelivery_changelist"),
                      {"action": "allow_retry", "_selected_action": [row.pk]})
    row.refresh_from_db()
    assert row.attempts == 0
    device = PushDevice.objects.get()
    admin_client.post(reverse("admin:notifications_pushdevice_changelist"),
                      {"action": "reactivate", "_selected_action": [device.pk]})
    device.refresh_from_db()
    assert device.is_active


def test_demo_seed_is_idempotent(community) -> None:
    for i in range(10):
        make_member(community, f"member{i}")
    demo.seed(community, NOW, random.Random(1))
    devices = set(PushDevice.objects.values_list("token", "member_id"))
    prefs = dict(Member.objects.values_list("pk", "notification_preferences"))
    demo.seed(community, NOW, random.Random(2))
    assert set(PushDevice.objects.values_list("token", "member_id")) == devices
    assert dict(Member.objects.values_list("pk", "notification_preferences")) == prefs
    members = list(Member.objects.order_by("pk"))
    assert len(devices) == 4  # members 0, 3, 6, 9 take push
    assert sum(m.wants("digest_email") for m in members) == 8
    assert all(PushDevice.objects.filter(member=m).exists() == m.wants("digest_push")
               for m in members)
