import json
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.utils import timezone

from automation.commands import OperatorCommand, check_community, check_job, check_job_params
from automation.errors import InvalidJobParams
from automation.models import JobRun
from automation.runs import enqueue_run, run_inline


class Command(OperatorCommand):
    help = "Run a job for one community now: queued for a worker, or --inline in this process."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("job", help="registered job name (see the admin's job registry)")
        parser.add_argument("--community", required=True, help="id or slug")
        parser.add_argument("--inline", action="store_true", help="run here, not on a worker")
        parser.add_argument("--params", default=None, help='JSON object, e.g. \'{"key": 1}\'')

    def handle(self, *args: Any, job: str, community: str, inline: bool = False,
               params: str | None = None, **options: Any) -> None:
        spec = check_job(job)
        target = check_community(community)
        given = check_job_params(spec, params) if params is not None else None
        if not target.is_active:
            # The same rule as the API (operations.trigger) and the worker, which skips an
            # inactive community's runs: nothing to queue until it is reactivated.
            raise CommandError(f"community {target.slug} is inactive: its jobs cannot be run "
                               "until it is reactivated")
        runner = run_inline if inline else enqueue_run
        try:
            run = runner(spec, target, trigger=JobRun.Trigger.MANUAL, now=timezone.now(),
                         params=given)
        except InvalidJobParams as exc:  # the params merged over the community's stored ones
            raise CommandError(str(exc)) from None
        if not inline:
            self.stdout.write(f"queued run {run.pk} of {spec.name} for {target.slug} "
                              f"on queue {spec.queue} (task {run.celery_task_id})")
            return
        self.stdout.write(f"run {run.pk} of {spec.name} for {target.slug}: {run.status}")
        if run.skip_reason:
            self.stdout.write(f"reason: {run.skip_reason}")
        if run.error_message:
            self.stdout.write(f"error: {run.error_type}: {run.error_message}")
        if run.result:
            self.stdout.write("result: " + json.dumps(run.result, sort_keys=True, default=str))
        if run.status in (JobRun.Status.FAILED, JobRun.Status.TIMED_OUT):
            raise CommandError(f"run {run.pk} ended {run.status}")
