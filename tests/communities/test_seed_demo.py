"""The run command's demo: every job has work, and seeding twice adds nothing."""

from io import StringIO

import pytest
from celery import Task
from django.core.management import CommandError, call_command

from analytics.models import ActivityEvent
from automation.models import JobRun
from automation.registry import all_jobs
from billing.models import Invoice
from communities.models import Community, Event, Member, Post
from moderation.models import Flag
from notifications.models import PushDevice

pytestmark = pytest.mark.django_db(transaction=True)


def counts() -> dict[str, int]:
    return {model.__name__: model.objects.count()
            for model in (Community, Member, Post, Event, ActivityEvent, Invoice, Flag,
                          PushDevice)}


def test_seed_demo_is_idempotent_and_queues_a_first_run_of_every_job(settings,
                                                                    monkeypatch) -> None:
    settings.WEBHOOKS_ALLOW_LOOPBACK = True
    # Keep the 40 first runs off the broker: a worker of another test in this session would
    # otherwise run them while this test's data is being flushed.
    published = []
    monkeypatch.setattr(Task, "apply_async",
                        lambda self, *args, **kwargs: published.append((self.name, kwargs)))
    call_command("seed_demo", "--no-runs", stdout=StringIO())
    first = counts()
    assert first["Community"] == 4
    assert all(first.values()), first
    call_command("seed_demo", stdout=StringIO())
    assert counts() == first

    jobs = {spec.name for spec in all_jobs() if spec.category != "testing"}
    queued = set(JobRun.objects.values_list("community__slug", "job_name"))
    assert queued == {(slug, job) for slug in Community.objects.values_list("slug", flat=True)
                      for job in jobs}
    assert len(published) == len(queued)
    backfill = JobRun.objects.filter(job_name="analytics_backfill_replay").first()
    assert set(backfill.params) == {"start", "end"}


@pytest.mark.parametrize(("url", "allow_loopback", "message"), [
    ("http://10.0.0.1:8099", True,
     "--receiver-url 'http://10.0.0.1:8099' is refused: 10.0.0.1 resolves to 10.0.0.1, a "
     "private address"),
    ("http://127.0.0.1:8099", False,
     "--receiver-url 'http://127.0.0.1:8099' is refused: 127.0.0.1 resolves to 127.0.0.1, a "
     "loopback address (127.0.0.0/8); outbound URLs must point to the public internet. (a "
     "receiver on this machine needs WEBHOOKS_ALLOW_LOOPBACK=true)"),
    ("ftp://127.0.0.1:8099", True,
     "--receiver-url 'ftp://127.0.0.1:8099' is refused: Only http and https URLs are allowed."),
    ("http://127.0.0.1:8099/" + "x" * 480, True,
     "--receiver-url is too long: webhook URLs hold at most 500 characters"),
    ("http://127.0.0.1:8099\x00", True, "--receiver-url contains a control character"),
])
def test_a_refused_receiver_url_is_named_and_nothing_is_seeded(
        settings, url: str, allow_loopback: bool, message: str) -> None:
    """The demo's webhooks must pass the outbound-URL guard that calls them: a receiver URL
    it refuses is refused up front, by name and reason, before any data is written."""
    settings.WEBHOOKS_ALLOW_LOOPBACK = allow_loopback
    with pytest.raises(CommandError) as info:
        call_command("seed_demo", "--receiver-url", url, stdout=StringIO())
    assert message in str(info.value)
    assert not Community.objects.exists()
