"""daily_community_digest against a real local SMTP server and a local push provider."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from urllib.parse import urlsplit

import pytest
from django.test import Client

from automation.cron import previous_fire_time
from automation.errors import InvalidJobParams
from automation.models import JobRun
from automation.runs import run_inline
from communities.models import Community, Event, Member, Post
from notifications.jobs.daily_community_digest import MAX_SEND_ATTEMPTS, daily_community_digest
from notifications.models import DigestDelivery, EmailBounce, EmailSuppression, PushDevice
from notifications.preferences import DIGEST_EMAIL, DIGEST_PUSH, read_unsubscribe_token
from tests.servers import closed_port_url, free_port

from .conftest import LONG_AGO, PUSH_TOKEN, SLOT, add_day_of_content, make_member

EMAIL_RECIPIENTS = ["ada@acme.example", "bea@acme.example", "bob@acme.example",
                    "dee@acme.example"]


def rcpts(smtp_server) -> list[str]:
    return sorted(rcpt for mail in smtp_server.handler.mails for rcpt in mail.rcpt_tos)


def test_happy_path_email_and_push(community, cast, content, smtp_server, push_provider):
    summary = daily_community_digest(community, SLOT)

    # Email: every opted-in, unsuppressed member, over one SMTP connection.
    assert rcpts(smtp_server) == EMAIL_RECIPIENTS
    assert smtp_server.handler.connections == 1
    [mail] = smtp_server.handler.to("bob@acme.example")
    assert mail.subject == ("Acme Makers digest for Wednesday, 1 July: "
                            "Laser cutter tips & tricks")
    html = mail.part("text/html")
    text = mail.part("text/plain")
    assert "Laser cutter tips &amp; tricks" in html and "Welcome thread" in html
    assert html.index("Laser cutter") < html.index("Welcome thread")  # by reactions+comments
    assert "Spam post" not in html and "Last week" not in html  # deleted / outside the day
    assert "Bea" in text  # the new member
    # Events in the community's timezone: 23:00 UTC on 2 July is 19:00 EDT.
    assert "Thu 2 Jul, 19:00 EDT: Monthly meetup (Hall B)" in text
    assert "Winter party" not in text  # more than 7 days ahead
    unsubscribe = str(mail.message["List-Unsubscribe"]).strip()  # may be folded
    assert unsubscribe.startswith("<http://testserver/notifications/unsubscribe/")
    assert mail.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    token = urlsplit(unsubscribe.strip("<>")).path.split("/")[-2]
    target = read_unsubscribe_token(token)
    assert (target.member, target.preference) == (cast.bob, DIGEST_EMAIL)

    # Push: ada has a device; dee wants push but has none.
    [request] = push_provider.requests
    assert request.path == "/v1/send"
    assert request.headers["Authorization"] == f"Bearer {PUSH_TOKEN}"
    body = request.json()
    assert body["token"] == "ada-phone-token"
    assert body["title"] == "Acme Makers: your daily digest"
    assert "Laser cutter tips & tricks" in body["body"]
    data = body["data"]
    assert (data["type"], data["community"], data["local_date"]) == (
        "daily_digest", "acme", "2026-07-01")
    push_off = read_unsubscribe_token(urlsplit(data["unsubscribe_url"]).path.split("/")[-2])
    assert (push_off.member, push_off.preference) == (cast.ada, DIGEST_PUSH)

    assert summary["sent"] == 5 and summary["failed"] == 0 and summary["bounced"] == 0
    assert summary["bounce_rate"] == 0.0
    assert summary["skipped_opted_out"] == 1 + 3  # cy's email; bob, cy, bea push
    assert summary["skipped_no_device"] == 1  # dee
    assert summary["skipped"] == 5
    assert 0 < summary["latency_ms_p50"] <= summary["latency_ms_max"]
    assert summary["content"]["top_posts"] == 2 and summary["content"]["new_members"] == 1
    assert summary["channels"]["email"]["sent"] == 4 and summary["channels"]["push"]["sent"] == 1
    assert DigestDelivery.objects.filter(status="sent", local_date=date(2026, 7, 1)).count() == 5
    assert PushDevice.objects.get(token="ada-phone-token").last_success_at is not None


def test_batches_reuse_one_connection_each(community, cast, content, smtp_server):
    summary = daily_community_digest(community, SLOT, batch_size=2)
    assert rcpts(smtp_server) == EMAIL_RECIPIENTS
    assert smtp_server.handler.connections == 2  # 4 recipients, 2 per batch
    assert summary["batches"] == 2


def test_rerun_of_the_same_day_sends_nothing_twice(community, cast, content, smtp_server,
                                                   push_provider):
    daily_community_digest(community, SLOT)
    # A manual re-run later the same local day is the same ledger slot.
    summary = daily_community_digest(community, SLOT + timedelta(hours=3))
    assert len(smtp_server.handler.mails) == 4 and len(push_provider.requests) == 1
    assert summary["sent"] == 0 and summary["skipped_already_sent"] == 5
    assert DigestDelivery.objects.count() == 5


def test_hard_bounce_is_recorded_and_suppresses_the_address(community, cast, content,
                                                            smtp_server):
    smtp_server.handler.reject["bob@acme.example"] = "550 5.1.1 mailbox unavailable"
    summary = daily_community_digest(community, SLOT)

    assert rcpts(smtp_server) == ["ada@acme.example", "bea@acme.example", "dee@acme.example"]
    assert (summary["sent"], summary["failed"], summary["bounced"]) == (3, 1, 1)
    assert summary["bounced_hard"] == 1 and summary["bounce_rate"] == 0.25
    assert summary["failures"] == [{"channel": "email", "member_id": cast.bob.pk,
                                    "error": "550 5.1.1 mailbox unavailable"}]
    bounce = EmailBounce.objects.get()
    assert (bounce.email, bounce.kind, bounce.smtp_code, bounce.member) == (
        "bob@acme.example", "hard", 550, cast.bob)
    assert EmailSuppression.objects.filter(email="bob@acme.example").exists()
    assert DigestDelivery.objects.get(member=cast.bob).status == "bounced"

    # The next day bob is not attempted at all (no second refusal, no second bounce).
    next_slot = SLOT + timedelta(days=1)
    add_day_of_content(community, cast.ada, next_slot)
    summary = daily_community_digest(community, next_slot)
    assert summary["skipped_suppressed"] == 1 and summary["sent"] == 3
    assert summary["failed"] == 0 and summary["bounce_rate"] == 0.0
    assert EmailBounce.objects.count() == 1
    assert smtp_server.handler.to("bob@acme.example") == []


def test_soft_bounce_is_retried_by_the_next_attempt(community, cast, content, smtp_server):
    smtp_server.handler.reject["bob@acme.example"] = "451 4.3.0 try again later"
    summary = daily_community_digest(community, SLOT)
    assert (summary["failed"], summary["bounced_soft"], summary["bounced_hard"]) == (1, 1, 0)
    assert EmailBounce.objects.get().kind == "soft"
    assert not EmailSuppression.objects.exists()
    assert DigestDelivery.objects.get(member=cast.bob).status == "failed"

    del smtp_server.handler.reject["bob@acme.example"]
    summary = daily_community_digest(community, SLOT)
    assert summary["sent"] == 1 and summary["skipped_already_sent"] == 3
    assert len(smtp_server.handler.to("bob@acme.example")) == 1
    assert len(smtp_server.handler.mails) == 4
    row = DigestDelivery.objects.get(member=cast.bob)
    assert (row.status, row.attempts) == ("sent", 2)


def test_server_closing_the_connection_mid_batch_is_survived(community, cast, content,
                                                             smtp_server):
    """A 421 answer closes the SMTP session; the batch reconnects and goes on."""
    smtp_server.handler.reject["bob@acme.example"] = "421 4.7.0 too many errors, closing"
    summary = daily_community_digest(community, SLOT)
    assert rcpts(smtp_server) == ["ada@acme.example", "bea@acme.example", "dee@acme.example"]
    assert smtp_server.handler.connections == 2
    assert (summary["sent"], summary["bounced_soft"], summary["failed"]) == (3, 1, 1)


def test_failing_address_is_given_up_after_max_attempts(community, cast, content, smtp_server):
    smtp_server.handler.reject["bob@acme.example"] = "452 4.2.2 mailbox full"
    for _ in range(MAX_SEND_ATTEMPTS):
        daily_community_digest(community, SLOT)
    summary = daily_community_digest(community, SLOT)
    assert summary["skipped_gave_up"] == 1 and summary["failed"] == 0
    assert EmailBounce.objects.count() == MAX_SEND_ATTEMPTS


def test_member_claimed_by_a_crashed_attempt_is_sent(community, cast, content, smtp_server):
    """A ledger row left `pending` (claimed, then the worker died) is sent by the retry."""
    DigestDelivery.objects.create(community=community, member=cast.bob,
                                  local_date=date(2026, 7, 1), channel="email", slot=SLOT,
                                  status="pending", claimed_at=SLOT)
    DigestDelivery.objects.create(community=community, member=cast.ada,
                                  local_date=date(2026, 7, 1), channel="email", slot=SLOT,
                                  status="sent", attempts=1)
    summary = daily_community_digest(community, SLOT)
    assert rcpts(smtp_server) == ["bea@acme.example", "bob@acme.example", "dee@acme.example"]
    assert summary["sent"] == 3 and summary["skipped_already_sent"] == 1


def test_push_invalid_token_deactivates_the_device(community, cast, content, smtp_server,
                                                   push_provider):
    PushDevice.objects.create(member=cast.dee, token="stale-token")
    PushDevice.objects.create(member=cast.ada, token="ada-tablet-token")

    def provider(request):
        token = request.json()["token"]
        if token == "stale-token":
            return 404, {}, b'{"error": "UNREGISTERED"}'
        if token == "ada-tablet-token":
            return 503, {}, b"overloaded"
        return 200, {}, b"{}"

    push_provider.respond = provider
    summary = daily_community_digest(community, SLOT)
    stale = PushDevice.objects.get(token="stale-token")
    assert not stale.is_active and "HTTP 404" in stale.deactivated_reason
    assert PushDevice.objects.get(token="ada-tablet-token").is_active  # 5xx: not its fault
    push = summary["channels"]["push"]
    assert (push["sent"], push["failed"], push["devices_deactivated"]) == (1, 1, 1)
    assert DigestDelivery.objects.get(member=cast.dee, channel="push").status == "failed"
    assert summary["sent"] == 5  # every email went out

    # Dee's only device is gone: the next attempt skips her instead of failing again.
    summary = daily_community_digest(community, SLOT)
    assert summary["skipped_no_device"] == 1 and summary["sent"] == 0
    assert len(push_provider.requests) == 3


def test_nothing_to_say_sends_nothing(community, cast, smtp_server):
    """No post, no newcomer and no event: no digest (an empty one would teach people to
    ignore it); the run says why."""
    Member.objects.filter(pk=cast.bea.pk).update(joined_at=LONG_AGO)
    Event.objects.create(community=community, title="Far", starts_at=SLOT + timedelta(days=8))
    Post.objects.create(community=community, title="Old", created_at=SLOT - timedelta(days=3))
    summary = daily_community_digest(community, SLOT)
    assert summary["skip_reason"] == "nothing_to_say"
    assert summary["sent"] == 0 and summary["skipped_nothing_to_say"] == 4
    assert summary["skipped_push_unconfigured"] == 1  # ada's push: no provider here
    assert smtp_server.handler.mails == [] and not DigestDelivery.objects.exists()


def test_dry_run_counts_and_sends_nothing(community, cast, content, smtp_server):
    summary = daily_community_digest(community, SLOT, dry_run=True)
    assert summary["dry_run"] is True and summary["would_send"] == 4
    assert summary["sample_subject"].startswith("Acme Makers digest for Wednesday, 1 July")
    assert smtp_server.handler.mails == [] and not DigestDelivery.objects.exists()


def test_unsubscribe_link_stops_the_next_digest(community, cast, content, smtp_server):
    daily_community_digest(community, SLOT)
    [mail] = smtp_server.handler.to("dee@acme.example")
    url = str(mail.message["List-Unsubscribe"]).strip().strip("<>")
    # A mail client's RFC 8058 one-click POST: no CSRF token, no cookies.
    response = Client(enforce_csrf_checks=True).post(
        urlsplit(url).path, data="List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200
    next_slot = SLOT + timedelta(days=1)
    add_day_of_content(community, cast.ada, next_slot)
    summary = daily_community_digest(community, next_slot)
    assert smtp_server.handler.to("dee@acme.example") == [mail]
    assert summary["skipped_opted_out"] == 2 + 3


@pytest.mark.parametrize(
    ("tz", "after", "local_date", "window_hours"),
    [
        # Spring forward (8 March 2026): noon EDT is 16:00 UTC; the day before was EST.
        ("America/New_York", datetime(2026, 3, 8, 18, 0, tzinfo=UTC), date(2026, 3, 8), 23),
        # Fall back (1 November 2026): noon EST is 17:00 UTC; the day before was EDT.
        ("America/New_York", datetime(2026, 11, 1, 18, 0, tzinfo=UTC), date(2026, 11, 1), 25),
        # Noon in Auckland (NZDT, UTC+13) is 23:00 UTC on the previous UTC date.
        ("Pacific/Auckland", datetime(2026, 1, 14, 23, 30, tzinfo=UTC), date(2026, 1, 15), 24),
    ],
)
def test_local_date_and_window_follow_the_community_clock(db, smtp_server, tz, after,
                                                          local_date, window_hours):
    community = Community.objects.create(name="Clock", slug="clock", timezone=tz)
    member = make_member(community, "ann")
    slot = previous_fire_time("0 12 * * *", tz, after)
    assert slot.astimezone(community.tzinfo).hour == 12
    start = slot - timedelta(hours=window_hours)
    inside = Post.objects.create(community=community, title="Inside",
                                 created_at=start + timedelta(minutes=30))
    Post.objects.create(community=community, title="Yesterday's", reaction_count=99,
                        created_at=start - timedelta(minutes=30))

    summary = daily_community_digest(community, slot)
    assert summary["content"]["local_date"] == local_date.isoformat()
    assert summary["content"]["window_start"] == start.isoformat()
    assert summary["content"]["top_posts"] == 1
    assert inside.title in smtp_server.handler.mails[0].part("text/html")
    assert DigestDelivery.objects.get(member=member).local_date == local_date


def test_invalid_params_are_refused(community) -> None:
    spec = daily_community_digest.spec
    with pytest.raises(InvalidJobParams) as info:
        spec.clean_params({"batch_size": 0, "top_posts": 50, "colour": "red"})
    assert "batch_size" in info.value.errors and "top_posts" in info.value.errors
    assert "unknown params: colour" in info.value.errors["__all__"]
    with pytest.raises(InvalidJobParams, match="batch_size"):
        run_inline(spec, community, trigger="manual", now=SLOT, params={"batch_size": "many"})
    assert not JobRun.objects.exists()


def test_registry_declaration() -> None:
    spec = daily_community_digest.spec
    assert (spec.queue, spec.default_cron, spec.category) == (
        "notifications", "0 12 * * *", "notifications")
    assert spec.soft_time_limit < spec.time_limit and spec.max_retries == 3


@pytest.mark.django_db(transaction=True)
def test_runs_through_the_platform_path(community, cast, content, smtp_server):
    run = run_inline(daily_community_digest.spec, community, trigger="manual", now=SLOT,
                     params={"batch_size": 10})
    assert run.status == JobRun.Status.SUCCEEDED
    assert run.result["sent"] == 4 and run.result["bounce_rate"] == 0.0
    assert len(smtp_server.handler.mails) == 4


@pytest.mark.django_db(transaction=True)
def test_smtp_down_is_retried_then_fails_and_loses_nobody(community, cast, content,
                                                          smtp_server, settings):
    port = free_port()
    settings.EMAIL_PORT = port  # nothing listens there
    run = run_inline(daily_community_digest.spec, community, trigger="manual", now=SLOT)
    assert run.status == JobRun.Status.FAILED
    assert run.attempts == 4  # the first attempt plus max_retries=3
    assert run.error_message.startswith(
        f"gave up after 4 attempts: SMTP server 127.0.0.1:{port} unavailable: "
        "ConnectionRefusedError")
    assert "unsent members stay pending for the retry" in run.error_message
    assert set(DigestDelivery.objects.values_list("status", flat=True)) == {"pending"}

    # The server is back: a new run for the slot sends to everyone, once.
    settings.EMAIL_PORT = smtp_server.port
    run = run_inline(daily_community_digest.spec, community, trigger="manual", now=SLOT)
    assert run.status == JobRun.Status.SUCCEEDED and run.result["sent"] == 4
    assert rcpts(smtp_server) == EMAIL_RECIPIENTS


@pytest.mark.django_db(transaction=True)
def test_push_provider_down_does_not_hold_back_email(community, cast, content, smtp_server,
                                                     settings):
    settings.WEBHOOKS_ALLOW_LOOPBACK = True
    settings.PUSH_PROVIDER_URL = closed_port_url() + "/v1/send"
    run = run_inline(daily_community_digest.spec, community, trigger="manual", now=SLOT)
    assert run.status == JobRun.Status.FAILED and run.attempts == 4
    assert "push provider" in run.error_message and "unreachable" in run.error_message
    # Every attempt found the emails in the ledger: each member got exactly one.
    assert rcpts(smtp_server) == EMAIL_RECIPIENTS
    assert DigestDelivery.objects.get(member=cast.ada, channel="push").status == "pending"
