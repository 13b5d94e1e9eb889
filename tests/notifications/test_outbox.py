"""The outbox: notify_member / notify_admins, delivered over SMTP and the push provider."""

from __future__ import annotations

import pytest

from communities.models import Member
from notifications.delivery import MAX_DELIVERY_ATTEMPTS, deliver, deliver_pending
from notifications.models import EmailBounce, EmailSuppression, PushDevice
from notifications.outbox import notify_admins, notify_member
from notifications.tasks import deliver_notification
from notifications.tasks import deliver_pending as deliver_pending_task
from tests.servers import closed_port_url, free_port

from .conftest import PUSH_TOKEN, make_member


@pytest.fixture
def bob(community) -> Member:
    return make_member(community, "bob")


def notify(member: Member, key: str = "dunning:inv-1:attempt-1", **extra) -> tuple:
    return notify_member(member, kind="billing.dunning", subject="Your payment failed",
                         body="Please update your card.", html_body="<p>Please update</p>",
                         dedup_key=key, **extra)


def test_notify_member_is_delivered_once_per_dedup_key(bob, smtp_server,
                                                       django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        notification, created = notify(bob)
    assert created and len(callbacks) == 1  # delivery is queued after commit

    summary = deliver_pending()
    assert summary["sent"] == 1
    [mail] = smtp_server.handler.mails
    assert mail.rcpt_tos == ["bob@acme.example"] and mail.subject == "Your payment failed"
    assert "Please update your card." in mail.part("text/plain")
    assert mail.part("text/html").strip() == "<p>Please update</p>"
    notification.refresh_from_db()
    assert (notification.status, notification.attempts) == ("sent", 1)
    assert notification.sent_at is not None

    # The job re-runs and notifies again with the same key: nothing new, nothing sent.
    with django_capture_on_commit_callbacks() as callbacks:
        again, created = notify(bob)
    assert (again.pk, created, callbacks) == (notification.pk, False, [])
    assert deliver_pending()["sent"] == 0
    assert deliver(notification.pk) == "not_pending"
    assert len(smtp_server.handler.mails) == 1


def test_notify_admins_batch_shares_one_connection(community, smtp_server):
    make_member(community, "ada", role=Member.Role.ADMIN)
    make_member(community, "eve", role=Member.Role.ADMIN)
    make_member(community, "bob")
    new = notify_admins(community, kind="integrations.disabled", subject="Webhook disabled",
                        body="CRM sync was disabled.", dedup_key="webhook:7:disabled")
    assert new == 2
    assert notify_admins(community, kind="integrations.disabled", subject="x", body="x",
                         dedup_key="webhook:7:disabled") == 0
    assert deliver_pending(community=community)["sent"] == 2
    assert sorted(m.rcpt_tos[0] for m in smtp_server.handler.mails) == [
        "ada@acme.example", "eve@acme.example"]
    assert smtp_server.handler.connections == 1


def test_suppressed_and_inactive_members_are_not_attempted(community, bob, smtp_server):
    EmailSuppression.objects.create(email="BOB@acme.example")
    gone = make_member(community, "gone")
    Member.objects.filter(pk=gone.pk).update(is_active=False)
    first, _ = notify(bob)
    second, _ = notify(gone)
    summary = deliver_pending()
    assert summary["suppressed"] == 2 and smtp_server.handler.mails == []
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.status == second.status == "suppressed"
    assert "suppressed after a hard bounce" in first.last_error


def test_hard_bounce_ends_the_notification_and_suppresses(community, bob, smtp_server):
    ok = make_member(community, "ok")
    smtp_server.handler.reject["bob@acme.example"] = "550 5.1.1 no such user"
    bounced, _ = notify(bob)
    notify(ok)
    summary = deliver_pending()
    assert (summary["sent"], summary["bounced"]) == (1, 1)
    bounced.refresh_from_db()
    assert bounced.status == "bounced" and bounced.last_error == "550 5.1.1 no such user"
    bounce = EmailBounce.objects.get()
    assert (bounce.kind, bounce.smtp_code, bounce.source) == ("hard", 550, "billing.dunning")
    assert EmailSuppression.objects.filter(email="bob@acme.example").exists()
    assert smtp_server.handler.to("ok@acme.example")


def test_soft_bounce_stays_pending_until_max_attempts(bob, smtp_server):
    smtp_server.handler.reject["bob@acme.example"] = "451 4.7.1 greylisted"
    notification, _ = notify(bob)
    for _ in range(MAX_DELIVERY_ATTEMPTS - 1):
        assert deliver_pending()["retry_later"] == 1
    notification.refresh_from_db()
    assert notification.status == "pending"
    assert deliver_pending()["failed"] == 1
    notification.refresh_from_db()
    assert notification.status == "failed"
    assert notification.last_error.startswith(f"gave up after {MAX_DELIVERY_ATTEMPTS} attempts")
    assert not EmailSuppression.objects.exists()


def test_smtp_down_leaves_the_outbox_pending(bob, smtp_server, settings):
    port = free_port()
    settings.EMAIL_PORT = port
    notification, _ = notify(bob)
    summary = deliver_pending()
    assert summary["retry_later"] == 1 and "email" in summary["channels_down"]
    notification.refresh_from_db()
    assert notification.status == "pending" and notification.attempts == 0
    assert f"127.0.0.1:{port} unavailable" in notification.last_error

    settings.EMAIL_PORT = smtp_server.port
    assert deliver_pending()["sent"] == 1
    assert smtp_server.handler.to("bob@acme.example")


def test_push_notification_reaches_the_provider(community, bob, push_provider):
    PushDevice.objects.create(member=bob, token="bob-token")
    PushDevice.objects.create(member=bob, token="bob-old-token")
    push_provider.respond = lambda request: (
        (410, {}, b"gone") if request.json()["token"] == "bob-old-token" else (200, {}, b"{}"))
    notification, _ = notify(bob, channel="push", data={"invoice": "inv-1"})
    assert deliver_pending()["sent"] == 1
    first, second = push_provider.requests
    assert second.json()["token"] == "bob-old-token"
    assert first.headers["Authorization"] == f"Bearer {PUSH_TOKEN}"
    assert first.json() == {"token": "bob-token", "title": "Your payment failed",
                            "body": "Please update your card.",
                            "data": {"kind": "billing.dunning", "invoice": "inv-1"}}
    assert not PushDevice.objects.get(token="bob-old-token").is_active
    notification.refresh_from_db()
    assert notification.status == "sent"


def test_push_without_device_or_provider(community, bob, settings):
    no_device, _ = notify(bob, channel="push", key="a")
    settings.WEBHOOKS_ALLOW_LOOPBACK = True
    settings.PUSH_PROVIDER_URL = closed_port_url() + "/send"
    owner = make_member(community, "owner")
    PushDevice.objects.create(member=owner, token="owner-token")
    down, _ = notify(owner, channel="push", key="b")
    summary = deliver_pending()
    assert summary["suppressed"] == 1 and summary["retry_later"] == 1
    no_device.refresh_from_db()
    down.refresh_from_db()
    assert no_device.status == "suppressed" and down.status == "pending"
    assert "unreachable" in down.last_error


def test_tasks_deliver_and_sweep(bob, smtp_server):
    one, _ = notify(bob, key="one")
    notify(bob, key="two")
    assert deliver_notification.apply(args=[one.pk]).get() == "sent"
    summary = deliver_pending_task.apply(kwargs={"limit": 10}).get()
    assert summary["sent"] == 1 and "statuses" not in summary
    assert len(smtp_server.handler.mails) == 2
