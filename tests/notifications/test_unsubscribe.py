"""Signed unsubscribe links: confirm page, one-click POST, tampered and foreign tokens."""

from __future__ import annotations

import pytest
from django.core import signing
from django.test import Client
from django.urls import reverse

from communities.models import Member
from notifications.preferences import (
    DIGEST_EMAIL,
    DIGEST_PUSH,
    InvalidUnsubscribeToken,
    make_unsubscribe_token,
    read_unsubscribe_token,
    unsubscribe_url,
)

from .conftest import make_member


@pytest.fixture
def bob(community) -> Member:
    return make_member(community, "bob", digest_push=True)


def url_for(token: str) -> str:
    return reverse("notifications:unsubscribe", kwargs={"token": token})


def test_token_round_trip(bob) -> None:
    target = read_unsubscribe_token(make_unsubscribe_token(bob, DIGEST_PUSH))
    assert (target.member, target.preference) == (bob, DIGEST_PUSH)
    assert unsubscribe_url(bob, DIGEST_EMAIL).startswith(
        "http://testserver/notifications/unsubscribe/")
    with pytest.raises(ValueError, match="unknown preference"):
        make_unsubscribe_token(bob, "everything")


def test_get_confirms_and_post_unsubscribes(client: Client, bob) -> None:
    url = url_for(make_unsubscribe_token(bob, DIGEST_EMAIL))
    page = client.get(url)
    assert page.status_code == 200
    assert "Unsubscribe from the daily digest by email?" in page.content.decode()
    bob.refresh_from_db()
    assert bob.wants(DIGEST_EMAIL)  # a GET (link scanner, preview) changes nothing

    done = client.post(url)
    assert done.status_code == 200 and "You are unsubscribed" in done.content.decode()
    bob.refresh_from_db()
    assert not bob.wants(DIGEST_EMAIL) and bob.wants(DIGEST_PUSH)
    assert client.post(url).status_code == 200  # a second click is harmless
    assert "already turned off" in client.get(url).content.decode()


def test_tampered_token_is_refused(client: Client, bob) -> None:
    token = make_unsubscribe_token(bob, DIGEST_EMAIL)
    tampered = token[:-3] + ("aaa" if not token.endswith("aaa") else "bbb")
    for bad in (tampered, token[:20], "not-a-token"):
        response = client.post(url_for(bad))
        assert response.status_code == 400
        assert "This unsubscribe link is not valid" in response.content.decode()
    bob.refresh_from_db()
    assert bob.wants(DIGEST_EMAIL)


def test_token_signed_for_something_else_is_refused(client: Client, bob) -> None:
    # Same payload, signed with the same key but another salt (another feature's token).
    other = signing.dumps({"m": bob.pk, "p": DIGEST_EMAIL}, salt="something.else", compress=True)
    assert client.get(url_for(other)).status_code == 400
    forged_pref = signing.dumps({"m": bob.pk, "p": "is_staff"},
                                salt="notifications.unsubscribe.v1")
    assert client.get(url_for(forged_pref)).status_code == 400


def test_token_of_a_deleted_member(client: Client, bob) -> None:
    token = make_unsubscribe_token(bob, DIGEST_EMAIL)
    bob.delete()
    response = client.get(url_for(token))
    assert response.status_code == 400
    assert "no longer exists" in response.content.decode()
    with pytest.raises(InvalidUnsubscribeToken):
        read_unsubscribe_token(token)
