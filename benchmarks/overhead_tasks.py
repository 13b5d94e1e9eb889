"""Tasks of the per-run overhead benchmark (imported by its worker and producer only)."""

from celery import shared_task

from automation.registry import tenant_job


@shared_task(name="bench.bare_noop", ignore_result=True)
def bare_noop(i: int) -> None:
    """(a) A bare Celery task: no result, no record."""


@shared_task(name="bench.result_noop", ignore_result=False)
def result_noop(i: int) -> int:
    """(b) The same no-op with its result stored by django-celery-results (django-db)."""
    return i


@tenant_job(name="bench_noop", description="A no-op job for the overhead benchmark.",
            category="testing", queue="automation")
def bench_noop(community, now) -> dict:
    """(c) Through execute_run: run record, per-tenant lock, skip checks, metrics."""
    return {}
