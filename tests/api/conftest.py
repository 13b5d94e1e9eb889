"""API test helpers: a JSON client per credential, the operator token, community keys."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from api.models import ApiKey
from communities.models import Community

OPERATOR_TOKEN = "operator-token-for-tests-0123456789abcdef"


class Api:
    """Django's test client speaking JSON with one Authorization header."""

    def __init__(self, token: str | None) -> None:
        self.client = Client()
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def get(self, path: str, **params: Any) -> Any:
        return self.client.get(path, params, headers=self.headers)

    def post(self, path: str, body: Any = None) -> Any:
        data = "" if body is None else json.dumps(body)
        return self.client.post(path, data, content_type="application/json",
                                headers=self.headers)

    def patch(self, path: str, body: Any) -> Any:
        return self.client.patch(path, json.dumps(body), content_type="application/json",
                                 headers=self.headers)

    def send(self, method: str, path: str, body: bytes | str = b"",
             content_type: str = "application/json", **environ: Any) -> Any:
        """A request with this exact body; `environ` overrides what the client derives
        from it (CONTENT_LENGTH, wsgi.input, ...), to send what a real client might."""
        environ.setdefault("CONTENT_TYPE", content_type)
        return self.client.generic(method, path, body, content_type=content_type,
                                   headers=self.headers, **environ)


@pytest.fixture(autouse=True)
def operator_token(settings) -> str:
    settings.AUTOMATION_API_TOKEN = OPERATOR_TOKEN
    return OPERATOR_TOKEN


@pytest.fixture
def operator() -> Api:
    return Api(OPERATOR_TOKEN)


@pytest.fixture
def key(community: Community) -> tuple[ApiKey, str]:
    return ApiKey.issue(community, "tests", now=timezone.now())


@pytest.fixture
def tenant(key: tuple[ApiKey, str]) -> Api:
    """The API as the `community` fixture's admin sees it, through its key."""
    return Api(key[1])


@pytest.fixture
def other_tenant(other_community: Community) -> Api:
    return Api(ApiKey.issue(other_community, "tests", now=timezone.now())[1])
