"""Permission boundaries of the admin site: every action and every page of our own.

The walks derive what they check from the site itself (`site._registry`, `site.actions`,
`site.get_urls()`), so an action or page added later without a permission check fails here
without anyone adding it to a list. A refusal must change nothing: every table is compared
before and after, and no Celery message may be published (runs, charges, deliveries).

Each walk is one test whose cases (an action, a page) each run in a savepoint rolled back
after it, on the rows the test made once; the failures are collected and named together.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from celery.signals import before_task_publish
from django.apps import apps
from django.contrib import admin
from django.contrib.admin import AdminSite, ModelAdmin
from django.contrib.auth.models import Permission, User
from django.contrib.sessions.models import Session
from django.db import connection, models
from django.test import Client, RequestFactory
from django.urls import URLPattern, reverse
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from analytics.models import Backfill, BackfillChunk
from api.models import ApiKey
from automation.models import CommunityAutomationSetting, JobRun
from billing.models import Invoice, Subscription
from communities.models import Community, Member
from moderation.models import Escalation, Flag
from monitoring.models import Alert
from notifications.models import DigestDelivery, Notification, PushDevice
from tests.dashboard.helpers import case, report, same_login

pytestmark = pytest.mark.django_db
site: AdminSite = admin.site


def declared_actions(model_admin: ModelAdmin) -> list[str]:
    """The site-wide actions (delete_selected) and the model admin's own, by name."""
    own = [a if isinstance(a, str) else a.__name__ for a in model_admin.actions or ()]
    return [name for name, _ in site.actions] + own


ACTIONS = [(model, name) for model, model_admin in site._registry.items()
           for name in declared_actions(model_admin)]


def action_id(value: Any) -> str:
    return value._meta.label if isinstance(value, type) else str(value)


# ---------------------------------------------------------------- users and rows


def staff(username: str, perms: models.QuerySet[Permission] | None = None) -> User:
    user = User.objects.create_user(username, password="x", is_staff=True)
    if perms is not None:
        user.user_permissions.set(perms)
    return User.objects.get(pk=user.pk)  # no stale permission cache


def view_perms() -> models.QuerySet[Permission]:
    return Permission.objects.filter(codename__startswith="view_")


def perms(*names: str) -> models.QuerySet[Permission]:
    """Permissions by "app_label.codename"."""
    query = models.Q(pk__in=[])
    for name in names:
        app_label, codename = name.split(".")
        query |= models.Q(content_type__app_label=app_label, codename=codename)
    found = Permission.objects.filter(query)
    assert found.count() == len(names), f"unknown permission among {names}"
    return found


def login(user: User | None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


@pytest.fixture
def view_only(db) -> User:
    """A staff user holding every view_* permission and nothing else."""
    return staff("viewer", view_perms())


@pytest.fixture
def no_perms(db) -> User:
    return staff("nobody")


class RowMaker:
    """One row of any registered model: explicit rows for the models with actions (each in a
    state where its actions would change something), generic rows for the others."""

    def __init__(self, community: Community) -> None:
        self.community = community
        self.rows: dict[type[models.Model], models.Model] = {Community: community}
        self.counter = itertools.count(1)

    def parent(self, field: models.Field) -> models.Model:
        related = field.related_model
        if field.one_to_one or related not in self.rows:
            return self.generic(related, keep=not field.one_to_one)
        return self.rows[related]

    def value(self, field: models.Field) -> Any:
        n = next(self.counter)
        if field.is_relation:
            return self.parent(field)
        if field.choices:
            return field.choices[0][0]
        kind = field.get_internal_type()
        if kind in ("CharField", "SlugField", "TextField", "EmailField", "URLField"):
            return f"{field.name}-{n}"[:field.max_length]
        if kind == "DateTimeField":  # increasing: a model's end comes after its start
            return timezone.now() + timedelta(hours=n)
        if kind == "DateField":
            return timezone.now().date() + timedelta(days=n)
        if kind == "DecimalField":
            return Decimal(0)
        if kind == "JSONField":
            return {}
        if kind == "BooleanField":
            return False
        if kind.endswith("IntegerField"):
            return n
        raise NotImplementedError(f"no sample value for {field.model.__name__}.{field.name} "
                                  f"({kind}): teach RowMaker.value")

    def generic(self, model: type[models.Model], *, keep: bool = True) -> models.Model:
        """A row with every required field filled, written without save() side effects."""
        values = {field.name: self.value(field) for field in model._meta.concrete_fields
                  if not (field.primary_key or field.null or field.has_default()
                          or getattr(field, "auto_now", False)
                          or getattr(field, "auto_now_add", False))}
        [row] = model.objects.bulk_create([model(**values)])
        if keep:
            self.rows.setdefault(model, row)
        return row

    def explicit(self) -> None:
        now = timezone.now()
        community = self.community
        member = Member.objects.create(community=community, email="m@example.com",
                                       display_name="M")
        subscription = Subscription.objects.create(
            community=community, member=member, stripe_customer_id="cus_1",
            stripe_subscription_id="sub_1", plan="pro", amount_cents=1000)
        backfill = Backfill.objects.create(community=community, start=now - timedelta(hours=2),
                                           end=now, created_at=now, last_run_at=now)
        flag = Flag.objects.create(community=community, target_type="post", target_id=1,
                                   reason="spam", status=Flag.Status.OPEN)
        self.rows.update({
            Member: member,
            CommunityAutomationSetting: community.automation_settings.get(
                job_name="test_sleep", enabled=True),
            PeriodicTask: PeriodicTask.objects.create(
                name="hand-made", task="test_sleep", enabled=True,
                interval=IntervalSchedule.objects.create(every=1, period="hours")),
            Subscription: subscription,
            Invoice: Invoice.objects.create(subscription=subscription, stripe_invoice_id="in_1",
                                            amount_due=1000, status=Invoice.Status.OPEN),
            Backfill: backfill,
            BackfillChunk: BackfillChunk.objects.create(backfill=backfill, hour=backfill.start,
                                                        key="events/hour-0"),
            Notification: Notification.objects.create(
                community=community, member=member, kind="digest", dedup_key="d1",
                subject="s", body="b", status=Notification.Status.FAILED, attempts=3),
            PushDevice: PushDevice.objects.create(member=member, token="t1", is_active=False,
                                                  deactivated_reason="gone"),
            DigestDelivery: DigestDelivery.objects.create(
                community=community, member=member, local_date=now.date(), channel="email",
                slot=now, status=DigestDelivery.Status.FAILED, attempts=2),
            Flag: flag,
            Escalation: Escalation.objects.create(flag=flag, level=1, claimed_at=now,
                                                  status=Escalation.Status.CLAIMED),
            ApiKey: ApiKey.issue(community, "k", now=now)[0],
            Alert: Alert.objects.create(kind="failure", job_name="test_sleep",
                                        community=community, first_seen=now, last_seen=now,
                                        fingerprint=Alert.key("failure", "test_sleep",
                                                              community.pk)),
        })


@pytest.fixture
def rows(community: Community, other_community: Community,
         admin_user: User) -> dict[type[models.Model], models.Model]:
    """A row of every model registered on the admin site."""
    CommunityAutomationSetting.objects.filter(community=other_community,
                                              job_name="test_sleep").update(enabled=False)
    maker = RowMaker(community)
    maker.rows[User] = admin_user
    maker.explicit()
    for model in site._registry:
        if model not in maker.rows:
            maker.generic(model)
    missing = [m._meta.label for m in site._registry if not m.objects.exists()]
    assert not missing, f"no row to select for {missing}"
    return maker.rows


# ---------------------------------------------------------------- what must not change


def digest_query() -> tuple[list[str], str]:
    """Every table of the database (sessions aside: a request may touch its own) and one
    query giving a digest of each one's rows: any insert, update or delete changes it."""
    with connection.cursor() as cursor:
        names = sorted(set(connection.introspection.table_names(cursor))
                       - {Session._meta.db_table})
    assert {m._meta.db_table for m in apps.get_models(include_auto_created=True)
            if m._meta.managed and m is not Session} <= set(names)
    quote = connection.ops.quote_name
    return names, "SELECT " + ", ".join(
        f"(SELECT md5(coalesce(string_agg(r::text, '|' ORDER BY r::text), '')) "
        f"FROM {quote(name)} r)" for name in names)


def everything(names: list[str], query: str) -> dict[str, str]:
    """The digest of every table, by table name."""
    with connection.cursor() as cursor:
        cursor.execute(query)
        return dict(zip(names, cursor.fetchone(), strict=True))


@pytest.fixture
def published() -> Iterator[list[str]]:
    """The names of the Celery tasks published while the test runs."""
    sent: list[str] = []

    def record(sender: str | None = None, **kwargs: Any) -> None:
        sent.append(sender or "?")

    before_task_publish.connect(record, weak=False)
    yield sent
    before_task_publish.disconnect(record)


@pytest.fixture
def unchanged(published: list[str], django_capture_on_commit_callbacks
              ) -> Callable[[Callable[[], Any]], list[Any]]:
    """Run requests (their on-commit work included) and assert they changed nothing."""
    tables = digest_query()

    def check(send: Callable[[], Any]) -> list[Any]:
        runs, before, sent = JobRun.objects.count(), everything(*tables), len(published)
        with django_capture_on_commit_callbacks(execute=True):
            responses = send()
        assert JobRun.objects.count() == runs, "a run was queued"
        assert published[sent:] == [], f"published {published[sent:]}"
        after = everything(*tables)
        changed = [table for table in before if before[table] != after[table]]
        assert not changed, f"changed: {changed}"
        return responses

    return check


# ---------------------------------------------------------------- every action


def test_every_action_declares_permissions() -> None:
    """`@admin.action(permissions=[...])` on every action, each backed by a has_*_permission."""
    failures: list[str] = []
    for model, name in ACTIONS:
        with case(f"{action_id(model)} action {name}", failures):
            model_admin = site._registry[model]
            func, _, _ = model_admin.get_action(name)
            allowed = getattr(func, "allowed_permissions", ())
            assert allowed, "declares no permissions"
            for permission in allowed:
                assert callable(getattr(model_admin, f"has_{permission}_permission", None)), (
                    f"no has_{permission}_permission")
    assert not failures, report(failures, len(ACTIONS))


def test_view_only_staff_can_neither_see_nor_forge_an_action(
        rows, view_only: User, no_perms: User, unchanged) -> None:
    """A user who may only look is not offered the action, and a forged POST of it runs
    nothing; a staff user without any permission gets 403 from the changelist."""
    viewer, nobody = login(view_only), login(no_perms)  # logging in writes last_login
    failures: list[str] = []
    for model, name in ACTIONS:
        with case(f"{action_id(model)} action {name}", failures):
            url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
            pk = rows[model].pk if model in rows else model.objects.first().pk
            forged = {"action": name, "_selected_action": [pk], "post": "yes"}
            looker, stranger = same_login(viewer), same_login(nobody)

            def send(url=url, forged=forged, looker=looker, stranger=stranger) -> list[Any]:
                return [looker.post(url, {**forged, "index": "0"}),  # the list's action bar
                        looker.post(url, forged),  # a confirmation page's form
                        stranger.post(url, forged)]

            first, second, refused = unchanged(send)
            assert refused.status_code == 403
            for response in (first, second):
                # The list again (the user has no action at all), or back to it with the
                # admin's refusal. Either way the list the user sees does not offer it.
                assert response.status_code in (200, 302)
                page = response
                if response.status_code == 302:
                    page = looker.get(response["Location"])
                    told = [str(m) for m in page.context["messages"]]
                    assert told == ["No action selected."]
                assert page.status_code == 200
                form = page.context["action_form"]
                offered = [value for value, _ in form.fields["action"].choices] if form else []
                assert name not in offered, "offered to a view-only user"
    assert not failures, report(failures, len(ACTIONS))


def test_every_action_is_available_to_someone(admin_user: User) -> None:
    """A permission nobody can hold would hide an action for good: a superuser sees each,
    except deleting where the model admin forbids deletion outright."""
    request = RequestFactory().get("/")
    request.user = admin_user
    failures: list[str] = []
    for model, name in ACTIONS:
        with case(f"{action_id(model)} action {name}", failures):
            model_admin = site._registry[model]
            expected = name != "delete_selected" or model_admin.has_delete_permission(request)
            assert (name in model_admin.get_actions(request)) == expected, (
                "hidden from a superuser" if expected else "offered though deletion is "
                                                           "forbidden")
    assert not failures, report(failures, len(ACTIONS))


def test_the_walk_covers_every_action_a_superuser_sees(admin_user: User) -> None:
    """An action added through get_actions() rather than `actions` is walked too."""
    request = RequestFactory().get("/")
    request.user = admin_user
    for model_admin in site._registry.values():
        assert set(model_admin.get_actions(request)) <= set(declared_actions(model_admin))


# ---------------------------------------------------------------- every page of our own


def custom_urls() -> list[URLPattern]:
    """The site's own pages: its URLs less those of a stock AdminSite and the model admins."""
    stock = {p.name for p in AdminSite.get_urls(site) if isinstance(p, URLPattern)}
    return [p for p in site.get_urls() if isinstance(p, URLPattern) and p.name not in stock]


URL_SAMPLES = {"job_name": "webhook_health_monitor"}


def path_of(pattern: URLPattern) -> str:
    names = pattern.pattern.converters.keys()
    missing = set(names) - set(URL_SAMPLES)
    assert not missing, f"add a sample value for {missing} of {pattern.name} to URL_SAMPLES"
    return reverse(f"admin:{pattern.name}", kwargs={n: URL_SAMPLES[n] for n in names})


def bodies(community: Community, other: Community) -> list[dict[str, str]]:
    """POST bodies that would change something on a page that lacked its check."""
    return [{"job": "test_sleep", "op": "disable", "community": community.slug},
            {"job": "test_sleep", "op": "enable", "community": other.slug},
            {"job": "test_sleep", "op": "run", "community": community.slug}]


def test_the_site_has_the_custom_pages_we_expect() -> None:
    """The walk below sees the registry and the dashboard (so it is not walking nothing)."""
    assert {p.name for p in custom_urls()} >= {"job_registry", "dashboard", "dashboard_running",
                                                "dashboard_action", "dashboard_history"}


def test_every_custom_page_refuses_who_lacks_its_permission(
        rows, view_only: User, no_perms: User, community: Community,
        other_community: Community, unchanged) -> None:
    """Anonymous: to the login page. Staff without permissions: 403 (405 for a method the
    page does not answer). View-only staff may read pages but no POST of theirs is taken.
    Nothing changes either way."""
    posts = bodies(community, other_community)
    nobody, viewer = login(no_perms), login(view_only)
    failures: list[str] = []
    patterns = custom_urls()
    for pattern in patterns:
        with case(f"page {pattern.name}", failures):
            url = path_of(pattern)
            clients = {"anonymous": login(None), "nobody": same_login(nobody),
                       "viewer": same_login(viewer)}

            def send(url=url, clients=clients) -> dict[str, list[Any]]:
                return {who: [client.get(url)] + [client.post(url, body) for body in posts]
                        for who, client in clients.items()}

            sent = unchanged(send)
            for response in sent["anonymous"]:
                assert response.status_code == 302 and "/admin/login/" in response["Location"]
            codes = {response.status_code for response in sent["nobody"]}
            assert 403 in codes and codes <= {403, 405}, f"nobody: {codes}"
            get, *viewer_posts = sent["viewer"]
            assert get.status_code in (200, 405), f"viewer: GET {get.status_code}"
            codes = {response.status_code for response in viewer_posts}
            assert codes <= {403, 405}, f"viewer: POST {codes}"
    assert not failures, report(failures, len(patterns))


@pytest.mark.parametrize("url_name, needed", [
    ("admin:job_registry", "view_communityautomationsetting"),
    ("admin:dashboard", "view_jobrun"),
    ("admin:dashboard_running", "view_jobrun"),
])
def test_pages_need_their_own_view_permission(url_name: str, needed: str) -> None:
    """Every other view permission is not enough; the page's own opens it."""
    user = staff("almost", view_perms().exclude(codename=needed))
    assert login(user).get(reverse(url_name)).status_code == 403
    user.user_permissions.add(perms(f"automation.{needed}").get())
    assert login(user).get(reverse(url_name)).status_code == 200


def test_index_lists_only_the_pages_the_user_may_open() -> None:
    """The registry and dashboard entries of the app list follow the pages' permissions."""
    runs_only = staff("runs", perms("automation.view_jobrun"))
    page = login(runs_only).get(reverse("admin:index")).content.decode()
    assert "Operations dashboard" in page and "Jobs (registry)" not in page
    settings_only = staff("settings", perms("automation.view_communityautomationsetting"))
    page = login(settings_only).get(reverse("admin:index")).content.decode()
    assert "Jobs (registry)" in page and "Operations dashboard" not in page
    assert login(staff("nobody")).get(reverse("admin:index")).status_code == 200


# ---------------------------------------------------------------- the right permission works


def changelist(model: type[models.Model]) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")


def post_action(user: User, model: type[models.Model], name: str, pk: int) -> Any:
    return login(user).post(changelist(model), {"action": name, "_selected_action": [pk]},
                            follow=True)


def test_run_now_needs_the_run_permission_not_change(
        community: Community, django_capture_on_commit_callbacks) -> None:
    """Changing settings does not imply starting work; the run permission does."""
    setting = community.automation_settings.get(job_name="test_sleep")
    changer = staff("changer", perms("automation.view_communityautomationsetting",
                                     "automation.change_communityautomationsetting"))
    post_action(changer, CommunityAutomationSetting, "run_now", setting.pk)
    assert not JobRun.objects.exists()
    runner = staff("runner", perms("automation.view_communityautomationsetting",
                                   "automation.run_communityautomationsetting"))
    with django_capture_on_commit_callbacks(execute=True):
        response = post_action(runner, CommunityAutomationSetting, "run_now", setting.pk)
    assert "Queued 1 run(s)" in response.content.decode()
    run = JobRun.objects.get()
    assert (run.job_name, run.community, run.trigger) == ("test_sleep", community, "manual")


def test_revoke_with_the_change_permission(community: Community) -> None:
    key, _ = ApiKey.issue(community, "old", now=timezone.now())
    user = staff("keys", perms("api.view_apikey", "api.change_apikey"))
    response = post_action(user, ApiKey, "revoke", key.pk)
    assert "Revoked 1 key(s)." in response.content.decode()
    key.refresh_from_db()
    assert key.revoked_at is not None


def test_retry_payment_with_the_run_permission(rows) -> None:
    invoice = rows[Invoice]
    retries = JobRun.objects.filter(job_name="subscription_delinquency_retry")
    changer = staff("changer", perms("billing.view_invoice", "billing.change_invoice"))
    post_action(changer, Invoice, "retry_now", invoice.pk)
    assert not retries.exists()  # editing an invoice is not charging its card
    user = staff("billing", perms("billing.view_invoice", "billing.run_invoice"))
    response = post_action(user, Invoice, "retry_now", invoice.pk)
    assert "Queued 1 retry run(s)" in response.content.decode()
    run = retries.get()
    assert (run.job_name, run.params) == ("subscription_delinquency_retry",
                                          {"invoice": "in_1", "retry_now": True})


def test_replay_and_deliver_again_with_their_run_permissions(
        rows, published: list[str], django_capture_on_commit_callbacks) -> None:
    chunk, notification = rows[BackfillChunk], rows[Notification]
    user = staff("ops", perms("analytics.view_backfillchunk", "analytics.run_backfillchunk",
                              "notifications.view_notification",
                              "notifications.run_notification"))
    with django_capture_on_commit_callbacks(execute=True):
        post_action(user, BackfillChunk, "replay_on_worker", chunk.pk)
        post_action(user, Notification, "requeue", notification.pk)
    assert published == ["analytics.replay_chunk", "notifications.deliver_notification"]
    notification.refresh_from_db()
    assert notification.status == Notification.Status.PENDING


def test_resolve_alert_with_the_change_permission(rows) -> None:
    """The alert form is read-only to all; change_alert still grants resolving."""
    alert = rows[Alert]
    user = staff("monitor", perms("monitoring.view_alert", "monitoring.change_alert"))
    response = post_action(user, Alert, "mark_resolved", alert.pk)
    assert "1 alert(s) resolved." in response.content.decode()
    alert.refresh_from_db()
    assert alert.resolved_at is not None


def test_dashboard_actions_each_need_their_permission(
        community: Community, django_capture_on_commit_callbacks) -> None:
    """Enable/disable need change, run now needs run; each refused one is a 403."""
    url = reverse("admin:dashboard_action")
    setting = community.automation_settings.get(job_name="test_sleep")
    base = ("automation.view_jobrun",)
    changer = login(staff("changer", perms(*base,
                                           "automation.change_communityautomationsetting")))
    runner = login(staff("runner", perms(*base, "automation.run_communityautomationsetting")))
    run = {"job": "test_sleep", "op": "run", "community": community.slug}
    disable = {"job": "test_sleep", "op": "disable", "community": community.slug}
    assert changer.post(url, run).status_code == 403
    assert runner.post(url, disable).status_code == 403
    setting.refresh_from_db()
    assert setting.enabled and not JobRun.objects.exists()
    page = runner.get(reverse("admin:dashboard")).content.decode()
    assert 'value="run"' in page and 'value="disable"' not in page
    page = changer.get(reverse("admin:dashboard")).content.decode()
    assert 'value="disable"' in page and 'value="run"' not in page
    assert changer.post(url, disable).status_code == 302
    setting.refresh_from_db()
    assert not setting.enabled
    setting.enabled = True
    setting.save()
    with django_capture_on_commit_callbacks(execute=True):
        assert runner.post(url, run).status_code == 302
    assert JobRun.objects.get().trigger == JobRun.Trigger.MANUAL
