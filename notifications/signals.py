"""Erasing notification data of members that retention anonymised."""

from __future__ import annotations

from typing import Any

from django.dispatch import receiver

from communities.signals import members_anonymized

from .models import PushDevice


@receiver(members_anonymized)
def forget_push_devices(sender: Any, community: Any, member_ids: list[int], **_: Any) -> None:
    # A device token identifies a person's phone or browser: personal data, so deleted.
    PushDevice.objects.filter(member_id__in=member_ids).delete()
