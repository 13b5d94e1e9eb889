"""Seed synthetic finished runs to try the dashboard at scale (or remove them)."""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from automation.registry import UnknownJob
from communities.lookup import CommunityNotFound, find_community

from ...seeding import delete_seeded, seed_runs


class Command(BaseCommand):
    help = ("Insert N finished runs (default 100000) spread over the last D days for the active "
            "communities, marked worker_hostname='seeded'; --delete removes them.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--runs", type=int, default=100_000)
        parser.add_argument("--days", type=float, default=30.0)
        parser.add_argument("--community", action="append", default=[],
                            help="id or slug; repeat for several (default: all active)")
        parser.add_argument("--job", action="append", default=[],
                            help="job name; repeat for several (default: the catalogue)")
        parser.add_argument("--batch-size", type=int, default=2000,
                            help="rows per bulk_create (--method orm)")
        parser.add_argument("--seed", type=int, default=0, help="random seed")
        parser.add_argument("--method", choices=["auto", "copy", "orm"], default="auto",
                            help="COPY (PostgreSQL) or bulk_create; auto picks COPY if it can")
        parser.add_argument("--delete", action="store_true", help="remove seeded runs instead")

    def handle(self, *args, **opts) -> None:
        if opts["delete"]:
            self.stdout.write(f"deleted {delete_seeded()} seeded runs")
            return
        if opts["runs"] < 0 or opts["batch_size"] < 1 or opts["days"] <= 0:
            raise CommandError("--runs must be ≥ 0, --batch-size ≥ 1 and --days > 0")
        try:
            communities = [find_community(v) for v in opts["community"]] or None
        except CommunityNotFound as exc:
            raise CommandError(str(exc)) from exc
        started = time.perf_counter()
        try:
            count = seed_runs(opts["runs"], now=timezone.now(), days=opts["days"],
                              communities=communities, job_names=opts["job"] or None,
                              batch_size=opts["batch_size"], seed=opts["seed"],
                              method=opts["method"])
        except (ValueError, UnknownJob) as exc:
            raise CommandError(str(exc)) from exc
        took = time.perf_counter() - started
        self.stdout.write(f"seeded {count} runs in {took:.1f}s")
