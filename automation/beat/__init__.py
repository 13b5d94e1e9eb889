"""A beat scheduler for 100k tenant schedules: heap, incremental sync, batched HA publishing.

Select it with ``CELERY_BEAT_SCHEDULER = "automation.beat.scheduler:BeatScheduler"``; it
reads the django-celery-beat tables, so Django admin editing keeps working. See
docs/scheduler.md.
"""
