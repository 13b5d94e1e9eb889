"""Posts and comments written in a community are activity: record them as events."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_save
from django.dispatch import receiver

from communities.models import Comment, Post

from .events import record_event
from .models import EventType


@receiver(post_save, sender=Post)
def post_written(sender: Any, instance: Post, created: bool, raw: bool = False,
                 **_: Any) -> None:
    if created and not raw:
        record_event(instance.community, EventType.POST, occurred_at=instance.created_at,
                     member=instance.author, payload={"post_id": instance.pk})


@receiver(post_save, sender=Comment)
def comment_written(sender: Any, instance: Comment, created: bool, raw: bool = False,
                    **_: Any) -> None:
    if created and not raw:
        record_event(instance.community, EventType.COMMENT, occurred_at=instance.created_at,
                     member=instance.author,
                     payload={"comment_id": instance.pk, "post_id": instance.post_id})
