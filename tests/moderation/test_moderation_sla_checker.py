"""moderation_sla_checker against a local HTTP server standing in for Slack."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from automation.errors import InvalidJobParams, PermanentJobError, RetryableJobError
from automation.models import JobRun
from automation.runs import run_inline
from communities.models import Comment, Community, Member, Post
from moderation import demo
from moderation.jobs.moderation_sla_checker import moderation_sla_checker
from moderation.models import Escalation, Flag, ModerationPolicy, Severity
from tests.servers import Request, closed_port_url

SLOT = datetime(2026, 7, 1, 16, 0, tzinfo=UTC)
SLACK_PATH = "/services/T000/B000/tsxyz"


@pytest.fixture(autouse=True)
def slack(settings, receiver):
    settings.WEBHOOKS_ALLOW_LOOPBACK = True
    settings.TRUST_SAFETY_SLACK_WEBHOOK_URL = f"{receiver.base_url}{SLACK_PATH}"
    receiver.respond = lambda request: (200, {"Content-Type": "text/plain"}, b"ok")
    return receiver


def make_flag(community: Community, severity: str, age: timedelta, *, status: str = "open",
              reason: str = "rule break", now: datetime = SLOT) -> Flag:
    post = Post.objects.create(community=community, title=f"post {severity} {age}")
    return Flag.objects.create(community=community, post=post, severity=severity,
                               status=status, reason=reason, created_at=now - age)


def check_block_kit(payload: dict) -> None:
    """The structure and limits Slack enforces on incoming-webhook messages."""
    assert isinstance(payload["text"], str) and payload["text"]
    blocks = payload["blocks"]
    assert 1 <= len(blocks) <= 50
    for block in blocks:
        kind = block["type"]
        assert kind in {"header", "section", "actions", "context", "divider"}
        if kind == "header":
            assert block["text"]["type"] == "plain_text"
            assert 0 < len(block["text"]["text"]) <= 150
        elif kind == "section":
            assert "text" in block or "fields" in block
            for field in block.get("fields", []):
                assert field["type"] in {"mrkdwn", "plain_text"}
                assert 0 < len(field["text"]) <= 2000
            assert len(block.get("fields", [])) <= 10
        elif kind == "actions":
            for element in block["elements"]:
                assert element["type"] == "button"
                assert 0 < len(element["text"]["text"]) <= 75
                assert len(element["url"]) <= 3000
                assert element.get("style") in (None, "primary", "danger")
        elif kind == "context":
            assert 1 <= len(block["elements"]) <= 10


def admin_link(payload: dict) -> str:
    [actions] = [b for b in payload["blocks"] if b["type"] == "actions"]
    return actions["elements"][0]["url"]


def fields(payload: dict) -> dict[str, str]:
    [section] = [b for b in payload["blocks"] if b["type"] == "section"]
    return dict(f["text"].split("\n", 1) for f in section["fields"])


def flag_in(request: Request, flag: Flag) -> bool:
    return admin_link(request.json()).endswith(f"/admin/moderation/flag/{flag.pk}/change/")


@pytest.fixture
def flags(community: Community, other_community: Community) -> dict[str, Flag]:
    return {
        "critical_breached": make_flag(community, Severity.CRITICAL, timedelta(minutes=90),
                                       reason="Threat <script> & more"),
        "high_within": make_flag(community, Severity.HIGH, timedelta(hours=3)),
        "medium_twice": make_flag(community, Severity.MEDIUM, timedelta(hours=50)),
        "low_within": make_flag(community, Severity.LOW, timedelta(days=2)),
        "resolved": make_flag(community, Severity.CRITICAL, timedelta(days=1),
                              status=Flag.Status.RESOLVED),
        "future": make_flag(community, Severity.CRITICAL, timedelta(hours=-2)),
        "other_community": make_flag(other_community, Severity.CRITICAL, timedelta(days=1)),
    }


def test_each_breached_flag_gets_one_block_kit_message(community, flags, slack) -> None:
    summary = moderation_sla_checker(community, SLOT)

    assert {k: summary[k] for k in ("open", "breached", "escalated", "already_escalated",
                                    "failed", "unconfirmed", "deferred")} == {
        "open": 4, "breached": 2, "escalated": 2, "already_escalated": 0, "failed": 0,
        "unconfirmed": 0, "deferred": 0}
    assert len(slack.requests) == 2
    for request in slack.requests:
        assert request.method == "POST" and request.path == SLACK_PATH
        assert request.headers["Content-Type"].startswith("application/json")
        check_block_kit(request.json())
    medium, critical = slack.requests  # oldest flag first
    assert flag_in(critical, flags["critical_breached"])
    link = admin_link(critical.json())
    assert link == f"http://testserver/admin/moderation/flag/{flags['critical_breached'].pk}/change/"
    shown = fields(critical.json())
    assert shown["*Community*"] == "Acme Makers (`acme`)"
    assert shown["*Severity*"] == "Critical"
    assert shown["*Age vs SLA*"] == "open 1h 30m, SLA 1h (1.5x)"
    assert shown["*Reason*"] == "Threat &lt;script&gt; &amp; more"  # user text escaped
    assert "level 1" in critical.json()["blocks"][0]["text"]["text"]
    # 50 h against a 24 h SLA is level 2 at once: one message, not one per level.
    assert "level 2" in medium.json()["blocks"][0]["text"]["text"]

    breached = Flag.objects.get(pk=flags["critical_breached"].pk)
    assert (breached.escalation_level, breached.escalated_at) == (1, SLOT)
    [row] = breached.escalations.all()
    assert (row.level, row.status, row.slack_status, row.slack_response, row.destination) == (
        1, Escalation.Status.SENT, 200, "ok", "platform")
    assert Flag.objects.get(pk=flags["medium_twice"].pk).escalation_level == 2
    for name in ("high_within", "low_within", "resolved", "future", "other_community"):
        flag = Flag.objects.get(pk=flags[name].pk)
        assert flag.escalation_level == 0 and not flag.escalations.exists()


def test_rerun_sends_nothing_twice_and_level_two_comes_later(community, flags, slack) -> None:
    moderation_sla_checker(community, SLOT)
    again = moderation_sla_checker(community, SLOT)
    assert (again["escalated"], again["already_escalated"], again["breached"]) == (0, 2, 2)
    assert len(slack.requests) == 2

    # One hour later the critical flag is 2.5x its SLA: level 2, one more message. The
    # high flag (4 h) is now past its SLA too: level 1.
    later = moderation_sla_checker(community, SLOT + timedelta(hours=1))
    assert (later["escalated"], later["already_escalated"]) == (2, 1)
    new = slack.requests[2:]
    assert len(new) == 2
    [critical] = [r for r in new if flag_in(r, flags["critical_breached"])]
    assert "level 2" in critical.json()["blocks"][0]["text"]["text"]
    assert list(Escalation.objects.filter(flag=flags["critical_breached"])
                .values_list("level", "status")) == [(1, "sent"), (2, "sent")]
    assert moderation_sla_checker(community, SLOT + timedelta(minutes=75))["escalated"] == 0
    # A day later the high flag reaches level 2, the low one level 1 and the flag created
    # after the first slot level 2; the critical and medium flags stay at the policy's cap
    # (level 2): nothing more for them.
    final = moderation_sla_checker(community, SLOT + timedelta(days=1))
    assert (final["escalated"], final["already_escalated"]) == (3, 2)
    assert len(slack.requests) == 7


def test_one_refused_post_fails_alone_and_is_retried_next_run(community, flags, slack) -> None:
    bad = flags["critical_breached"]
    extra = make_flag(community, Severity.HIGH, timedelta(hours=5))

    def respond(request: Request):
        if flag_in(request, bad):
            return 500, {}, b"internal_error"
        return 200, {}, b"ok"

    slack.respond = respond
    summary = moderation_sla_checker(community, SLOT)
    assert (summary["escalated"], summary["failed"], summary["breached"]) == (2, 1, 3)
    [failure] = [e for e in summary["escalations"] if e.get("error")]
    assert failure == {"flag": bad.pk, "level": 1, "attempt": "new", "status": 500,
                       "error": "HTTP 500 internal_error"}
    row = Escalation.objects.get(flag=bad)
    assert (row.status, row.attempts, row.slack_status) == ("failed", 1, 500)
    assert Flag.objects.get(pk=bad.pk).escalation_level == 0
    assert Flag.objects.get(pk=extra.pk).escalation_level == 1

    slack.respond = lambda request: (200, {}, b"ok")
    retry = moderation_sla_checker(community, SLOT + timedelta(minutes=15))
    assert (retry["escalated"], retry["already_escalated"], retry["failed"]) == (1, 2, 0)
    assert len(slack.requests) == 4
    assert flag_in(slack.requests[-1], bad)
    row.refresh_from_db()
    assert (row.status, row.attempts, row.sent_at) == (
        "sent", 2, SLOT + timedelta(minutes=15))


@pytest.mark.django_db(transaction=True)
def test_slack_down_is_retried_then_fails_with_a_clear_error(community, settings, slack) -> None:
    flag = make_flag(community, Severity.CRITICAL, timedelta(hours=2))
    make_flag(community, Severity.HIGH, timedelta(hours=5))
    settings.TRUST_SAFETY_SLACK_WEBHOOK_URL = f"{closed_port_url()}{SLACK_PATH}"
    spec = moderation_sla_checker.spec
    run = run_inline(spec, community, trigger="manual", now=SLOT)

    assert run.status == JobRun.Status.FAILED
    assert run.attempts == spec.max_retries + 1
    assert run.error_type == "RetryableJobError"
    assert run.error_message.startswith(
        f"gave up after {run.attempts} attempts: Slack webhook unavailable: "
        "NewConnectionError")
    assert "(platform webhook); 0 escalated, 2 failed, 0 deferred" in run.error_message
    assert set(Escalation.objects.values_list("status", "attempts")) == {("failed", 4)}
    assert Flag.objects.get(pk=flag.pk).escalation_level == 0

    # Slack is back: the next run posts both, once.
    settings.TRUST_SAFETY_SLACK_WEBHOOK_URL = f"{slack.base_url}{SLACK_PATH}"
    run = run_inline(spec, community, trigger="manual", now=SLOT + timedelta(minutes=15))
    assert run.status == JobRun.Status.SUCCEEDED
    assert (run.result["escalated"], run.attempts) == (2, 1)
    assert len(slack.requests) == 2


def test_outage_stops_posting_and_defers_the_rest(community, settings) -> None:
    for hours in range(2, 8):
        make_flag(community, Severity.CRITICAL, timedelta(hours=hours))
    settings.TRUST_SAFETY_SLACK_WEBHOOK_URL = f"{closed_port_url()}{SLACK_PATH}"
    with pytest.raises(RetryableJobError, match="3 failed, 3 deferred"):
        moderation_sla_checker(community, SLOT)
    assert Escalation.objects.count() == 3  # the deferred were not claimed


def test_slack_timeout_counts_as_not_delivered(community, slack) -> None:
    flag = make_flag(community, Severity.CRITICAL, timedelta(hours=2))
    slack.delay = 1.0
    with pytest.raises(RetryableJobError, match="Slack webhook unavailable: ReadTimeoutError"):
        moderation_sla_checker(community, SLOT, timeout_seconds=0.5)
    row = Escalation.objects.get(flag=flag)
    assert (row.status, row.slack_status) == ("failed", None)


def test_rate_limit_stops_the_run_and_honours_retry_after(community, slack) -> None:
    for hours in (2, 3, 4):
        make_flag(community, Severity.CRITICAL, timedelta(hours=hours))
    answers = iter([(200, {}, b"ok"), (429, {"Retry-After": "30"}, b"rate_limited")])
    slack.respond = lambda request: next(answers)
    with pytest.raises(RetryableJobError) as info:
        moderation_sla_checker(community, SLOT)
    assert info.value.retry_after == 30
    assert "rate limited by Slack" in str(info.value)
    assert "1 escalated, 1 failed, 1 deferred" in str(info.value)
    assert len(slack.requests) == 2


def test_max_messages_defers_the_rest_to_the_next_run(community, slack) -> None:
    for hours in (2, 3, 4):
        make_flag(community, Severity.CRITICAL, timedelta(hours=hours))
    summary = moderation_sla_checker(community, SLOT, max_messages=2)
    assert (summary["escalated"], summary["deferred"], summary["failed"]) == (2, 1, 0)
    summary = moderation_sla_checker(community, SLOT + timedelta(minutes=15), max_messages=2)
    assert (summary["escalated"], summary["already_escalated"]) == (1, 2)
    assert len(slack.requests) == 3


def test_claim_left_by_a_dead_run_is_not_resent_until_released(community, admin_client,
                                                              slack) -> None:
    flag = make_flag(community, Severity.CRITICAL, timedelta(hours=2))
    row = Escalation.objects.create(flag=flag, level=2, claimed_at=SLOT - timedelta(minutes=15),
                                    destination="platform")
    summary = moderation_sla_checker(community, SLOT)
    assert (summary["unconfirmed"], summary["escalated"]) == (1, 0)
    assert slack.requests == []

    response = admin_client.post("/admin/moderation/escalation/", {
        "action": "send_again", "_selected_action": [row.pk]})
    assert response.status_code == 302
    row.refresh_from_db()
    assert row.status == "failed"
    summary = moderation_sla_checker(community, SLOT + timedelta(minutes=15))
    assert summary["escalated"] == 1 and len(slack.requests) == 1


def test_community_policy_sets_the_sla_and_the_channel(community, slack) -> None:
    ModerationPolicy.objects.create(community=community, sla_low_minutes=10,
                                    max_escalation_level=1,
                                    slack_webhook_url=f"{slack.base_url}/community/hook")
    make_flag(community, Severity.LOW, timedelta(minutes=15))
    make_flag(community, Severity.CRITICAL, timedelta(hours=30))
    summary = moderation_sla_checker(community, SLOT)
    assert summary["escalated"] == 2
    assert {r.path for r in slack.requests} == {"/community/hook"}
    assert set(Escalation.objects.values_list("level", "destination")) == {(1, "community")}


@pytest.mark.parametrize("field, value, message", [
    ("sla_high_minutes", 0, "greater than or equal to 1"),
    ("max_escalation_level", 9, "less than or equal to 5"),
    ("slack_webhook_url", "http://10.0.0.7/hook", "a private address"),
    ("slack_webhook_url", "http://169.254.169.254/latest", "a cloud metadata address"),
    ("slack_webhook_url", "ftp://hooks.example/x", "Only http and https"),
])
def test_policy_validation_refuses_bad_values(community, field, value, message) -> None:
    with pytest.raises(ValidationError, match=message):
        ModerationPolicy.objects.create(community=community, **{field: value})
    assert not ModerationPolicy.objects.exists()


def test_database_refuses_a_zero_sla_written_behind_validation(community) -> None:
    policy = ModerationPolicy.objects.create(community=community)
    with pytest.raises(IntegrityError), transaction.atomic():
        ModerationPolicy.objects.filter(pk=policy.pk).update(sla_critical_minutes=0)


def test_private_url_written_behind_validation_is_refused_at_call_time(community,
                                                                       slack) -> None:
    policy = ModerationPolicy.objects.create(community=community)
    ModerationPolicy.objects.filter(pk=policy.pk).update(slack_webhook_url="http://10.1.2.3/h")
    flag = make_flag(community, Severity.CRITICAL, timedelta(hours=2))
    with pytest.raises(PermanentJobError, match="Slack refused every escalation"):
        moderation_sla_checker(community, SLOT)
    assert slack.requests == []
    row = Escalation.objects.get(flag=flag)
    assert row.status == "failed" and "a private address" in row.error


def test_breaches_without_any_webhook_configured_fail_clearly(community, settings) -> None:
    settings.TRUST_SAFETY_SLACK_WEBHOOK_URL = ""
    make_flag(community, Severity.CRITICAL, timedelta(hours=2))
    make_flag(community, Severity.CRITICAL, timedelta(minutes=5))
    with pytest.raises(PermanentJobError, match="no Trust & Safety Slack webhook"):
        moderation_sla_checker(community, SLOT)
    assert not Escalation.objects.exists()
    # Nothing breached: nothing to send, no error.
    assert moderation_sla_checker(community, SLOT - timedelta(minutes=90))["breached"] == 0


def test_invalid_params_are_refused(community) -> None:
    with pytest.raises(InvalidJobParams) as info:
        moderation_sla_checker.spec.clean_params({"timeout_seconds": 0, "max_messages": "x",
                                                  "channel": "#ts"})
    assert set(info.value.errors) == {"timeout_seconds", "max_messages", "__all__"}
    assert "unknown params: channel" in info.value.errors["__all__"]
    with pytest.raises(InvalidJobParams):
        run_inline(moderation_sla_checker.spec, community, trigger="manual", now=SLOT,
                   params={"max_messages": 0})
    assert not JobRun.objects.exists()


def test_flag_must_point_at_content_of_its_community(community, other_community) -> None:
    post = Post.objects.create(community=other_community, title="elsewhere")
    with pytest.raises(ValidationError, match="another community"):
        Flag.objects.create(community=community, post=post, reason="x")
    with pytest.raises(ValidationError, match="a post or a comment"):
        Flag.objects.create(community=community, reason="x")
    mine = Post.objects.create(community=community, title="here")
    comment = Comment.objects.create(community=community, post=mine, body="reply")
    flag = Flag.objects.create(community=community, comment=comment, reason="x")
    assert (flag.target_type, flag.target_id) == ("comment", comment.pk)
    # Pruned content leaves the flag and its reference.
    comment_id = comment.pk
    comment.delete()
    flag.refresh_from_db()
    assert (flag.comment, flag.target_type, flag.target_id) == (None, "comment", comment_id)
    flag.save()


def test_admin_lists_filters_and_links(community, flags, admin_client) -> None:
    moderation_sla_checker(community, SLOT)
    for query in ("", "?severity=critical", "?escalation=escalated", "?escalation=failed",
                  "?escalation_level__exact=2"):
        assert admin_client.get(f"/admin/moderation/flag/{query}").status_code == 200
    page = admin_client.get(f"/admin/moderation/flag/{flags['critical_breached'].pk}/change/")
    assert page.status_code == 200
    assert b"post #" in page.content
    assert admin_client.get("/admin/moderation/moderationpolicy/").status_code == 200
    assert admin_client.get("/admin/moderation/escalation/?status=sent").status_code == 200


def test_demo_seed_is_idempotent_and_gives_the_job_work(community) -> None:
    for n in range(3):
        Member.objects.create(community=community, email=f"m{n}@acme.example",
                              display_name=f"M{n}")
    demo.seed(community, SLOT, random.Random(1))
    demo.seed(community, SLOT, random.Random(2))
    assert Flag.objects.filter(community=community).count() == len(demo.DEMO_FLAGS)
    assert Post.objects.filter(community=community).count() == len(demo.DEMO_FLAGS)
    summary = moderation_sla_checker(community, SLOT)
    assert (summary["open"], summary["breached"], summary["escalated"]) == (7, 4, 4)


@pytest.mark.django_db(transaction=True)
def test_runs_through_the_platform_path(community, slack) -> None:
    make_flag(community, Severity.HIGH, timedelta(hours=5))
    run = run_inline(moderation_sla_checker.spec, community, trigger="manual", now=SLOT)
    assert run.status == JobRun.Status.SUCCEEDED
    assert (run.result["breached"], run.result["escalated"]) == (1, 1)
    assert len(slack.requests) == 1
