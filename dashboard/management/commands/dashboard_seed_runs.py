"""Seed synthetic finished runs to try the dashboard at scale (or remove them)."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.utils import timezone

from automation.commands import (
    OperatorCommand,
    check_community,
    check_integer,
    check_job,
    check_number,
)
from automation.input_limits import EARLIEST

from ...seeding import delete_seeded, seed_runs

# Enough for any dashboard trial (COPY inserts about 30k runs a second) and far below
# what the id column or a day's patience allows.
MAX_RUNS = 10_000_000
MAX_BATCH_SIZE = 100_000
MAX_SEED = 2**63 - 1


class Command(OperatorCommand):
    help = ("Insert N finished runs (default 100000) spread over the last D days for the active "
            "communities, marked worker_hostname='seeded'; --delete removes them.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--runs", type=int, default=100_000,
                            help=f"how many runs, 0 to {MAX_RUNS}")
        parser.add_argument("--days", type=float, default=30.0,
                            help="spread the runs over this many days before now (> 0)")
        parser.add_argument("--community", action="append", default=[],
                            help="id or slug; repeat for several (default: all active)")
        parser.add_argument("--job", action="append", default=[],
                            help="job name; repeat for several (default: the catalogue)")
        parser.add_argument("--batch-size", type=int, default=2000,
                            help=f"rows per bulk_create (--method orm), 1 to {MAX_BATCH_SIZE}")
        parser.add_argument("--seed", type=int, default=0, help="random seed")
        parser.add_argument("--method", choices=["auto", "copy", "orm"], default="auto",
                            help="COPY (PostgreSQL) or bulk_create; auto picks COPY if it can")
        parser.add_argument("--delete", action="store_true", help="remove seeded runs instead")

    def handle(self, *args: Any, **opts: Any) -> None:
        if opts["delete"]:
            self.stdout.write(f"deleted {delete_seeded()} seeded runs")
            return
        now = timezone.now()
        check_integer(opts["runs"], "--runs", minimum=0, maximum=MAX_RUNS)
        check_integer(opts["batch_size"], "--batch-size", minimum=1, maximum=MAX_BATCH_SIZE)
        check_integer(opts["seed"], "--seed", minimum=0, maximum=MAX_SEED)
        # The oldest seeded run must stay in the platform's range, like any other run.
        check_number(opts["days"], "--days", above=0,
                     maximum=(now - EARLIEST).days)
        communities = [check_community(v) for v in opts["community"]] or None
        job_names = [check_job(v, "--job").name for v in opts["job"]] or None
        started = time.perf_counter()
        try:
            count = seed_runs(opts["runs"], now=now, days=opts["days"],
                              communities=communities, job_names=job_names,
                              batch_size=opts["batch_size"], seed=opts["seed"],
                              method=opts["method"])
        except ValueError as exc:  # no community to seed for; COPY without PostgreSQL
            raise CommandError(str(exc)) from None
        took = time.perf_counter() - started
        self.stdout.write(f"seeded {count} runs in {took:.1f}s")
