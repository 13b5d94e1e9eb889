"""API keys in admin: created with the key shown once, revoked by an action, audited."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from api.models import ApiKey
from automation.models import AuditEntry
from communities.models import Community

from .conftest import Api

pytestmark = pytest.mark.django_db


def test_add_shows_the_key_once_and_it_works(admin_client: Client, admin_user,
                                             community: Community) -> None:
    response = admin_client.post(reverse("admin:api_apikey_add"),
                                 {"community": community.pk, "name": "CI"}, follow=True)
    assert response.status_code == 200
    page = response.content.decode()
    [raw] = re.findall(r"cak_[0-9a-f]{8}_[\w-]{43}", page)
    key = ApiKey.objects.get()
    assert (key.community, key.name, key.created_by) == (community, "CI", admin_user)
    assert raw.startswith(f"cak_{key.prefix}_")
    assert Api(raw).get("/api/communities/acme/jobs").status_code == 200
    # The change page shows the prefix only, never the key again.
    change = admin_client.get(reverse("admin:api_apikey_change", args=[key.pk])).content
    assert f"cak_{key.prefix}_".encode() in change and raw.encode() not in change
    entry = AuditEntry.objects.get(action="api_key.create")
    assert (entry.actor_label, entry.community, entry.after) == (
        admin_user.username, community, {"prefix": key.prefix, "name": "CI"})


def test_revoke_action_revokes_and_audits(admin_client: Client, admin_user,
                                          community: Community) -> None:
    key, raw = ApiKey.issue(community, "old", now=timezone.now())
    _, other_raw = ApiKey.issue(community, "kept", now=timezone.now())
    response = admin_client.post(reverse("admin:api_apikey_changelist"),
                                 {"action": "revoke", "_selected_action": [key.pk]})
    assert response.status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert Api(raw).get("/api/whoami").status_code == 401
    assert Api(other_raw).get("/api/whoami").status_code == 200
    entry = AuditEntry.objects.get(action="api_key.revoke")
    assert entry.actor_label == admin_user.username and entry.before == {"revoked_at": None}
    # Revoking again changes nothing and records nothing.
    admin_client.post(reverse("admin:api_apikey_changelist"),
                      {"action": "revoke", "_selected_action": [key.pk]})
    assert AuditEntry.objects.filter(action="api_key.revoke").count() == 1


def test_keys_cannot_be_deleted_only_revoked(admin_client: Client,
                                             community: Community) -> None:
    key, _ = ApiKey.issue(community, "k", now=timezone.now())
    response = admin_client.get(reverse("admin:api_apikey_delete", args=[key.pk]))
    assert response.status_code == 403
    listing = admin_client.get(reverse("admin:api_apikey_changelist")).content.decode()
    assert f"cak_{key.prefix}_" in listing and "delete_selected" not in listing
