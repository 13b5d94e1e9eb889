"""`automation_schedule_list` output, pinned to an injected instant."""

import re
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from communities.models import Community

pytestmark = pytest.mark.django_db(transaction=True)

EXPECTED = """\
job            community  cron         timezone          enabled  next_run_utc      next_run_local
test_broken    acme       0 * * * *    America/New_York  yes      2026-07-01 16:00  2026-07-01 12:00 EDT
test_db_blip   acme       on demand    America/New_York  yes      -                 -
test_flaky     acme       on demand    America/New_York  yes      -                 -
test_sleep     acme       0 12 * * *   America/New_York  yes      2026-07-01 16:00  2026-07-01 12:00 EDT
test_stubborn  acme       on demand    America/New_York  yes      -                 -
test_broken    kolkata    0 * * * *    Asia/Kolkata      no       -                 -
test_db_blip   kolkata    on demand    Asia/Kolkata      yes      -                 -
test_flaky     kolkata    on demand    Asia/Kolkata      yes      -                 -
test_sleep     kolkata    */5 * * * *  Asia/Kolkata      yes      2026-07-01 15:50  2026-07-01 21:20 IST
test_stubborn  kolkata    on demand    Asia/Kolkata      yes      -                 -
"""


@pytest.fixture
def configured(community: Community, other_community: Community) -> None:
    noon = community.automation_settings.get(job_name="test_sleep")
    noon.cron_override = "0 12 * * *"
    noon.save()
    off = other_community.automation_settings.get(job_name="test_broken")
    off.enabled = False
    off.save()


def rows_of_test_jobs(output: str) -> str:
    """The header and the test jobs' rows, columns re-aligned among themselves.

    Real jobs are listed too and widen the columns as the catalogue grows; the snapshot
    pins the test jobs, whose schedules are fixed.
    """
    lines = output.splitlines()
    rows = [re.split(r"  +", line.strip()) for line in lines[:1] + lines[1:]
            if line is lines[0] or line.startswith("test_")]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        + "\n"
        for row in rows
    )


def test_schedule_list_snapshot(configured) -> None:
    """Jobs, cron, zone, enabled and next fire in UTC and local time, in a stable layout."""
    out = StringIO()
    call_command("automation_schedule_list", "--now", "2026-07-01T15:47:00+00:00", stdout=out)
    assert rows_of_test_jobs(out.getvalue()) == EXPECTED


def test_schedule_list_for_one_community(configured) -> None:
    out = StringIO()
    call_command("automation_schedule_list", "--community", "kolkata",
                 "--now", "2026-07-01T15:47:00+00:00", stdout=out)
    assert "acme" not in out.getvalue()
    assert "kolkata" in out.getvalue()


def test_schedule_list_refuses_a_naive_now(db) -> None:
    with pytest.raises(CommandError, match="ISO 8601 instant with offset"):
        call_command("automation_schedule_list", "--now", "2026-07-01 12:00")


@pytest.mark.parametrize(("now", "message"), [
    ("2026-13-45T00:00:00+00:00",
     "--now '2026-13-45T00:00:00+00:00' is not a valid date and time: month must be in 1..12"),
    ("9999-12-31T23:59:59+00:00",
     "--now 9999-12-31 is out of range; dates must be between 2000-01-01 and 2099-12-31."),
    ("0001-01-01T00:00:00+05:00", "--now 0001-01-01 is out of range"),
    ("2099-12-31T23:00:00-05:00", "--now (in UTC) 2100-01-01 is out of range"),
    ("1999-12-31T23:59:59+00:00", "--now 1999-12-31 is out of range"),
    ("2026-07-01T15:47:00\x00", "--now contains a control character (U+0000) at position 19"),
])
def test_schedule_list_refuses_instants_outside_the_platform_range(
        db, now: str, message: str) -> None:
    """Next fire times are computed from --now: near the ends of the calendar there is no
    next one, so --now is held to the platform's range, as written and in UTC."""
    with pytest.raises(CommandError) as info:
        call_command("automation_schedule_list", "--now", now, stdout=StringIO())
    assert message in str(info.value)


def test_schedule_list_at_the_end_of_the_range(configured) -> None:
    """The last instant the platform accepts still has next fire times (in 2100)."""
    out = StringIO()
    call_command("automation_schedule_list", "--community", "acme",
                 "--now", "2099-12-31T23:59:59+00:00", stdout=out)
    assert re.search(r"test_sleep +acme +0 12 \* \* \* .* 2100-01-01 17:00 +2100-01-01 12:00 EST",
                     out.getvalue())


def test_schedule_list_refuses_a_community_that_is_not_text(db) -> None:
    with pytest.raises(CommandError, match="--community contains a control character"):
        call_command("automation_schedule_list", "--community", "ac\x1bme")
