import json

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from automation.errors import InvalidJobParams
from automation.models import JobRun
from automation.registry import UnknownJob, get_job
from automation.runs import enqueue_run, run_inline

from ._options import community_option


class Command(BaseCommand):
    help = "Run a job for one community now: queued for a worker, or --inline in this process."

    def add_arguments(self, parser) -> None:
        parser.add_argument("job", help="registered job name (see the admin's job registry)")
        parser.add_argument("--community", required=True, help="id or slug")
        parser.add_argument("--inline", action="store_true", help="run here, not on a worker")
        parser.add_argument("--params", default=None, help='JSON object, e.g. \'{"key": 1}\'')

    def handle(self, *args, job, community, inline=False, params=None, **options) -> None:
        try:
            spec = get_job(job)
        except UnknownJob as exc:
            raise CommandError(str(exc)) from exc
        target = community_option(community)
        try:
            parsed = json.loads(params) if params else None
        except json.JSONDecodeError as exc:
            raise CommandError(f"--params is not valid JSON: {exc}") from exc
        if parsed is not None and not isinstance(parsed, dict):
            raise CommandError("--params must be a JSON object")
        runner = run_inline if inline else enqueue_run
        try:
            run = runner(spec, target, trigger=JobRun.Trigger.MANUAL, now=timezone.now(),
                         params=parsed)
        except InvalidJobParams as exc:
            raise CommandError(str(exc)) from exc
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
