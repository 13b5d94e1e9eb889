"""webhook_health_monitor against a real local HTTP endpoint."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.core import mail
from django.core.exceptions import ValidationError

from automation.errors import InvalidJobParams
from automation.models import JobRun
from automation.runs import run_inline
from communities.models import Community, Member
from integrations.delivery import verify_signature
from integrations.jobs.webhook_health_monitor import webhook_health_monitor
from integrations.models import Webhook

SLOT = datetime(2026, 7, 1, 16, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def allow_loopback(settings) -> None:
    settings.WEBHOOKS_ALLOW_LOOPBACK = True


@pytest.fixture
def hook(community: Community, receiver) -> Webhook:
    Member.objects.create(community=community, email="ada@acme.example", display_name="Ada",
                          role=Member.Role.ADMIN)
    return Webhook.objects.create(community=community, name="CRM",
                                  url=f"{receiver.base_url}/hooks/crm")


def test_healthy_webhook_gets_one_signed_ping(community, hook, receiver) -> None:
    """The endpoint receives a POST whose signature verifies; the webhook records it."""
    summary = webhook_health_monitor(community, SLOT, timeout_seconds=2)
    assert (summary["checked"], summary["healthy"], summary["failed"]) == (1, 1, 0)
    [request] = receiver.requests
    assert request.path == "/hooks/crm"
    assert json.loads(request.body)["webhook_id"] == hook.pk
    signature = request.headers["X-Webhook-Signature"]
    assert verify_signature(hook.signing_secret, signature, request.body,
                            now=datetime.now(UTC))
    assert not verify_signature("wrong-secret", signature, request.body, now=datetime.now(UTC))
    hook.refresh_from_db()
    assert (hook.last_status_code, hook.consecutive_failures, hook.last_checked_for) == (
        200, 0, SLOT)
    assert hook.last_latency_ms is not None


def test_rerun_of_the_same_slot_sends_nothing(community, hook, receiver) -> None:
    webhook_health_monitor(community, SLOT)
    summary = webhook_health_monitor(community, SLOT)
    assert summary["checked"] == 0 and summary["skipped_already_checked"] == 1
    assert len(receiver.requests) == 1


def test_disabled_after_three_consecutive_failures(community, hook, receiver) -> None:
    """Three failing slots disable the webhook, record why, and email the admins once."""
    receiver.status = 500
    for n in range(3):
        webhook_health_monitor(community, SLOT + timedelta(minutes=10 * n), failure_threshold=3)
    hook.refresh_from_db()
    assert not hook.enabled
    assert hook.disabled_reason == "3 consecutive failed health checks; last: HTTP 500"
    assert [m.to for m in mail.outbox] == [["ada@acme.example"]]
    webhook_health_monitor(community, SLOT + timedelta(minutes=30))
    assert len(receiver.requests) == 3  # disabled: no more pings


def test_success_resets_the_failure_count(community, hook, receiver) -> None:
    receiver.status = 503
    webhook_health_monitor(community, SLOT)
    receiver.status = 204
    webhook_health_monitor(community, SLOT + timedelta(minutes=10))
    hook.refresh_from_db()
    assert hook.consecutive_failures == 0 and hook.enabled


@pytest.mark.parametrize("target", ["http://169.254.169.254/latest", "http://10.0.0.1/x"])
def test_redirect_to_a_forbidden_address_is_refused(community, hook, receiver, target) -> None:
    receiver.redirect_to = target
    summary = webhook_health_monitor(community, SLOT)
    assert summary["failed"] == 1
    assert summary["webhooks"][0]["error"].startswith(f"refused: {target}")
    assert len(receiver.requests) == 1


def test_url_changed_behind_validation_is_refused_at_call_time(community, hook,
                                                               receiver) -> None:
    Webhook.objects.filter(pk=hook.pk).update(url="http://10.1.2.3/hook")
    summary = webhook_health_monitor(community, SLOT)
    assert "a private address" in summary["webhooks"][0]["error"]
    assert receiver.requests == []


def test_private_url_is_refused_when_saved(community) -> None:
    with pytest.raises(ValidationError, match="a private address"):
        Webhook.objects.create(community=community, name="x", url="http://10.0.0.1/")


def test_timeout_counts_as_failure(community, hook, receiver) -> None:
    receiver.delay = 1.5
    summary = webhook_health_monitor(community, SLOT, timeout_seconds=0.5)
    assert summary["failed"] == 1
    assert "Timeout" in summary["webhooks"][0]["error"]


def test_invalid_params_are_refused() -> None:
    with pytest.raises(InvalidJobParams) as info:
        webhook_health_monitor.spec.clean_params({"failure_threshold": 0, "colour": 1})
    assert "failure_threshold" in info.value.errors
    assert "unknown params: colour" in info.value.errors["__all__"]


@pytest.mark.django_db(transaction=True)
def test_runs_through_the_platform_path(community, hook, receiver) -> None:
    run = run_inline(webhook_health_monitor.spec, community, trigger="manual",
                     now=datetime.now(UTC))
    assert run.status == JobRun.Status.SUCCEEDED
    assert run.result["healthy"] == 1
