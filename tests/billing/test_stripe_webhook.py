"""The Stripe webhook endpoint: signatures, idempotency by event id and by state, and signed
events that cannot be processed (400, kept as rejected, never 500)."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings
from django.db import (
    DataError,
    IntegrityError,
    OperationalError,
    connection,
    connections,
    transaction,
)
from django.test import Client

from billing import views, webhooks
from billing.jobs.subscription_delinquency_retry import subscription_delinquency_retry as job
from billing.models import Invoice, StripeEvent, Subscription
from billing.sandbox import sign_webhook_payload
from communities.models import Community

from .conftest import SLOT, past_due

URL = "/billing/stripe/webhook/"
T0 = 1_780_000_000  # event creation times (Unix), independent of the signing clock


@pytest.fixture
def subscription(community: Community) -> Subscription:
    return Subscription.objects.create(
        community=community, plan="Member", amount_cents=1200, currency="usd",
        stripe_customer_id="cus_1", stripe_subscription_id="sub_1",
        status=Subscription.Status.ACTIVE,
    )


def event(event_id: str, type_: str, obj: dict, created: int = T0) -> dict:
    return {"id": event_id, "object": "event", "type": type_, "created": created,
            "livemode": False, "data": {"object": obj}}


def invoice_obj(**fields) -> dict:
    return {"id": "in_1", "object": "invoice", "subscription": "sub_1", "customer": "cus_1",
            "amount_due": 1200, "currency": "usd", "status": "open", "attempt_count": 1,
            **fields}


def post(payload: dict | bytes, *, secret: str | None = None,
         timestamp: int | None = None, tamper: bytes | None = None):
    """POST signed as Stripe signs (tests/settings.py's secret unless told otherwise)."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    header = sign_webhook_payload(body, secret or settings.STRIPE_WEBHOOK_SECRET,
                                  timestamp or int(time.time()))
    return Client().post(URL, data=tamper or body, content_type="application/json",
                         HTTP_STRIPE_SIGNATURE=header)


def at(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


def test_payment_failed_starts_dunning_and_marks_past_due(subscription) -> None:
    response = post(event("evt_1", "invoice.payment_failed", invoice_obj()))
    assert response.status_code == 200
    assert response.json()["outcome"] == "applied"
    invoice = Invoice.objects.get(stripe_invoice_id="in_1")
    assert (invoice.amount_due, invoice.status, invoice.first_failed_at,
            invoice.next_retry_at, invoice.attempt_count) == (
        1200, Invoice.Status.OPEN, at(T0), at(T0) + timedelta(days=1), 1)
    subscription.refresh_from_db()
    assert subscription.status == Subscription.Status.PAST_DUE
    assert StripeEvent.objects.get().outcome == StripeEvent.Outcome.APPLIED

    # A later failure (e.g. one our own retry caused) leaves the schedule alone.
    post(event("evt_2", "invoice.payment_failed", invoice_obj(attempt_count=2), T0 + 3600))
    invoice.refresh_from_db()
    assert invoice.next_retry_at == at(T0) + timedelta(days=1) and invoice.attempt_count == 2


def test_invoice_paid_marks_paid_and_reactivates(subscription) -> None:
    post(event("evt_1", "invoice.payment_failed", invoice_obj()))
    response = post(event("evt_2", "invoice.paid", invoice_obj(
        status="paid", status_transitions={"paid_at": T0 + 50}), T0 + 60))
    assert response.json()["detail"] == "invoice in_1 paid; subscription active"
    invoice = Invoice.objects.get()
    assert (invoice.status, invoice.paid_at, invoice.next_retry_at) == (
        Invoice.Status.PAID, at(T0 + 50), None)
    subscription.refresh_from_db()
    assert subscription.status == Subscription.Status.ACTIVE


@pytest.mark.parametrize("period_on_items", [False, True])
def test_subscription_updated_sets_status_and_period(subscription, period_on_items) -> None:
    period = {"current_period_start": T0, "current_period_end": T0 + 30 * 86400}
    obj = {"id": "sub_1", "object": "subscription", "status": "unpaid"}
    obj.update({"items": {"data": [period]}} if period_on_items else period)
    response = post(event("evt_1", "customer.subscription.updated", obj))
    assert response.json()["detail"] == "status active → unpaid"
    subscription.refresh_from_db()
    assert (subscription.status, subscription.current_period_start,
            subscription.current_period_end) == (
        Subscription.Status.UNPAID, at(T0), at(T0 + 30 * 86400))


def test_replayed_event_is_acknowledged_and_changes_nothing(subscription) -> None:
    payload = event("evt_1", "customer.subscription.updated",
                    {"id": "sub_1", "status": "past_due"})
    assert post(payload).json()["outcome"] == "applied"
    Subscription.objects.filter(pk=subscription.pk).update(status="active")
    response = post(payload)
    assert response.status_code == 200 and response.json()["outcome"] == "duplicate"
    subscription.refresh_from_db()
    assert subscription.status == Subscription.Status.ACTIVE
    assert StripeEvent.objects.count() == 1


def test_older_events_do_not_overwrite_newer_state(subscription) -> None:
    post(event("evt_new", "customer.subscription.updated",
               {"id": "sub_1", "status": "canceled"}, T0 + 100))
    response = post(event("evt_old", "customer.subscription.updated",
                          {"id": "sub_1", "status": "active"}, T0))
    assert response.json()["outcome"] == "stale"
    subscription.refresh_from_db()
    assert subscription.status == Subscription.Status.CANCELED

    post(event("evt_paid", "invoice.paid", invoice_obj(status="paid"), T0 + 100))
    response = post(event("evt_failed", "invoice.payment_failed", invoice_obj(), T0 + 50))
    assert response.json()["outcome"] == "stale"
    invoice = Invoice.objects.get()
    assert invoice.status == Invoice.Status.PAID and invoice.next_retry_at is None
    assert sorted(StripeEvent.objects.values_list("event_id", "outcome")) == [
        ("evt_failed", "stale"), ("evt_new", "applied"), ("evt_old", "stale"),
        ("evt_paid", "applied")]


def test_failure_reported_after_payment_cannot_reopen_the_invoice(subscription) -> None:
    post(event("evt_paid", "invoice.paid", invoice_obj(status="paid"), T0))
    response = post(event("evt_failed", "invoice.payment_failed", invoice_obj(), T0 + 5))
    assert (response.json()["outcome"], response.json()["detail"]) == (
        "stale", "invoice is already paid")
    assert Invoice.objects.get().status == Invoice.Status.PAID


def test_unknown_types_and_objects_are_acknowledged(subscription) -> None:
    response = post(event("evt_1", "charge.refunded", {"id": "ch_1"}))
    assert (response.status_code, response.json()["outcome"]) == (200, "ignored")
    response = post(event("evt_2", "invoice.paid", invoice_obj(id="in_9", subscription="sub_9")))
    assert response.json()["detail"] == "unknown invoice and subscription"
    assert not Invoice.objects.exists()


@pytest.mark.parametrize("case", ["wrong_secret", "tampered", "too_old", "no_header",
                                  "garbage_header"])
def test_bad_signatures_are_refused(subscription, case) -> None:
    payload = event("evt_1", "customer.subscription.updated",
                    {"id": "sub_1", "status": "canceled"})
    if case == "wrong_secret":
        response = post(payload, secret="whsec_someone_else")
    elif case == "tampered":
        forged = json.dumps({**payload, "type": "invoice.paid"}).encode()
        response = post(payload, tamper=forged)
    elif case == "too_old":
        response = post(payload, timestamp=int(time.time()) - 3600)
    else:
        header = {} if case == "no_header" else {"HTTP_STRIPE_SIGNATURE": "v1=abc"}
        response = Client().post(URL, data=json.dumps(payload),
                                 content_type="application/json", **header)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error.startswith("missing Stripe-Signature" if case == "no_header"
                            else "invalid signature")
    subscription.refresh_from_db()
    assert subscription.status == Subscription.Status.ACTIVE
    assert not StripeEvent.objects.exists()


@pytest.mark.parametrize(("body", "message"), [
    (b"{not json", "invalid event: payload is not valid JSON"),
    (b"[1, 2]", "invalid event: payload is not a JSON object"),
    (json.dumps({"id": "x_1", "type": "invoice.paid", "created": T0,
                 "data": {"object": {}}}).encode(), "invalid event: id is not a Stripe event"),
    (json.dumps({"id": "evt_1", "type": "invoice.paid", "created": "yesterday",
                 "data": {"object": {}}}).encode(), "invalid event: created is missing"),
    (json.dumps(event("evt_1", "invoice.paid", {"id": "ch_1"})).encode(),
     "invalid event: data.object.id is not an invoice id"),
    (json.dumps(event("evt_1", "invoice.paid", invoice_obj(id="in_2", amount_due=-5))).encode(),
     "invalid event: data.object.amount_due"),
])
def test_signed_but_malformed_payloads_are_refused(subscription, body, message) -> None:
    response = post(body)
    assert response.status_code == 400
    assert response.json()["error"].startswith(message)
    [record] = StripeEvent.objects.all()
    assert record.outcome == StripeEvent.Outcome.REJECTED
    assert not Invoice.objects.exists()


def test_only_post_and_only_when_configured(settings, db) -> None:
    assert Client().get(URL).status_code == 405
    settings.STRIPE_WEBHOOK_SECRET = ""
    response = post(event("evt_1", "invoice.paid", invoice_obj()))
    assert response.status_code == 503
    assert response.json() == {"error": "STRIPE_WEBHOOK_SECRET is not configured"}


def test_late_failure_report_after_our_own_retry_is_stale(community, stripe_sandbox) -> None:
    """The job declined at SLOT; Stripe's report of an earlier failure arrives afterwards."""
    invoice = past_due(community, None, "in_acme_decline", sandbox=stripe_sandbox)
    stripe_sandbox.configure("in_acme_decline", outcome="decline")
    job(community, SLOT)
    invoice.refresh_from_db()
    scheduled = invoice.next_retry_at
    earlier = int(SLOT.timestamp()) - 600
    response = post(event("evt_late", "invoice.payment_failed",
                          invoice_obj(id="in_acme_decline", attempt_count=9), earlier))
    assert response.json()["outcome"] == "stale"
    invoice.refresh_from_db()
    assert (invoice.next_retry_at, invoice.attempt_count) == (scheduled, 2)


# -- signed events with odd values: 400, kept as rejected, nothing changed -----------------

def _body(payload: dict) -> bytes:
    return json.dumps(payload).encode()


def _with(type_: str, obj: dict, **envelope) -> bytes:
    return _body({**event("evt_odd", type_, obj), **envelope})


def _nested(depth: int, opening: str = "[", closing: str = "]") -> bytes:
    """An invoice.paid whose object nests `depth` levels below metadata, built as text."""
    head = _body(event("evt_deep", "invoice.paid", invoice_obj(metadata="X")))
    return head.replace(b'"X"', (opening * depth + closing * depth).encode())


def _sub_updated(**fields) -> bytes:
    return _with("customer.subscription.updated", {"id": "sub_1", "status": "active", **fields})


ODD_EVENTS = {
    # Unix times no datetime (or no dunning schedule) can hold.
    "created 1e20": (_with("invoice.paid", invoice_obj(), created=10**20), "created"),
    "created year 10000": (_with("invoice.paid", invoice_obj(), created=253402300800),
                           "created 253402300800 is out of range"),
    "created 2**63": (_with("invoice.paid", invoice_obj(), created=2**63), "out of range"),
    "created 2100": (_with("invoice.paid", invoice_obj(), created=4102444800), "out of range"),
    "created negative": (_with("invoice.paid", invoice_obj(), created=-1), "out of range"),
    "paid_at huge": (_with("invoice.paid", invoice_obj(status_transitions={"paid_at": 10**18})),
                     "status_transitions.paid_at"),
    "period end huge": (_sub_updated(current_period_start=T0, current_period_end=10**15),
                        "current_period_end"),
    "item period huge": (_sub_updated(items={"data": [{"current_period_start": 2**70,
                                                       "current_period_end": T0}]}),
                         "items.data[0].current_period_start"),
    # NUL characters, which PostgreSQL refuses in text and jsonb, and lone surrogates.
    "NUL in event id": (_body({**event("evt_1\x00", "invoice.paid", invoice_obj())}),
                        "id contains a NUL character"),
    "NUL in invoice id": (_with("invoice.paid", invoice_obj(id="in_1\x00")),
                          "data.object.id contains a NUL"),
    "NUL in currency": (_with("invoice.paid", invoice_obj(id="in_2", currency="us\x00")),
                        "currency contains a NUL"),
    "NUL in an unread field": (_with("invoice.paid", invoice_obj(description="a\x00b")),
                               "description contains a NUL"),
    "NUL in a key": (_with("invoice.paid", invoice_obj(metadata={"k\x00": "v"})),
                     "(a key) contains a NUL"),
    "NUL in error message": (_with("invoice.payment_failed", invoice_obj(
        last_finalization_error={"message": "declined\x00"})), "message contains a NUL"),
    "raw NUL byte": (_with("invoice.paid", invoice_obj(description="RAW")).replace(
        b"RAW", b"a\x00b"), "payload is not valid JSON"),
    "lone surrogate": (_with("invoice.paid", invoice_obj(description="SUR")).replace(
        b"SUR", b"\\ud800"), "not valid Unicode"),
    # Nesting that would exhaust json.loads' recursion or the jsonb parser's stack.
    "100000 arrays deep": (_nested(100_000), "nested more than 64 levels deep"),
    "65 arrays deep": (_nested(65), "nested more than 64 levels deep"),
    "5000 objects deep": (_nested(5000, '{"a":', "}"), "nested more than 64 levels deep"),
    "mixed 10000 deep": (_nested(5000, '[{"a":', "}]"), "nested more than 64 levels deep"),
    # Wrong types (and sizes) for fields the handler reads.
    "created float": (_with("invoice.paid", invoice_obj(), created=1.78e9), "created is missing"),
    "created bool": (_with("invoice.paid", invoice_obj(), created=True), "created is missing"),
    "data a list": (_body({**event("evt_odd", "invoice.paid", {}), "data": []}),
                    "data is missing or not a dict"),
    "object a string": (_body({**event("evt_odd", "invoice.paid", {}),
                               "data": {"object": "in_1"}}), "data.object is missing"),
    "invoice id a number": (_with("invoice.paid", invoice_obj(id=123)),
                            "data.object.id is missing or not a str"),
    "invoice id a dict": (_with("invoice.paid", invoice_obj(id={"id": "in_1"})),
                          "data.object.id is missing or not a str"),
    "invoice id too long": (_with("invoice.paid", invoice_obj(id="in_" + "a" * 300)),
                            "not an invoice id"),
    "subscription id spaces": (_sub_updated(id="sub_1 OR 1=1"), "not a subscription id"),
    "amount a string": (_with("invoice.paid", invoice_obj(id="in_2", amount_due="1200")),
                        "amount_due"),
    "amount too big": (_with("invoice.paid", invoice_obj(id="in_2", amount_due=10**12)),
                       "amount_due"),
    "amount a float": (_with("invoice.paid", invoice_obj(id="in_2", amount_due=12.5)),
                       "amount_due"),
    "currency a number": (_with("invoice.paid", invoice_obj(id="in_2", currency=840)),
                          "currency"),
    "currency not letters": (_with("invoice.paid", invoice_obj(id="in_2", currency="US$")),
                             "currency"),
    "status a list": (_sub_updated(status=["active"]), "data.object.status is missing"),
    "paid_at a string": (_with("invoice.paid", invoice_obj(
        status_transitions={"paid_at": "2026-01-01"})), "paid_at is not a Unix timestamp"),
    "period a string": (_sub_updated(current_period_start="x", current_period_end=T0),
                        "current_period_start is not a Unix timestamp"),
    "NaN": (_with("invoice.payment_failed", invoice_obj(attempt_count="N")).replace(
        b'"N"', b"NaN"), "NaN is not valid JSON"),
    "Infinity": (_with("invoice.paid", invoice_obj(amount_remaining="I")).replace(
        b'"I"', b"-Infinity"), "-Infinity is not valid JSON"),
    "1e400": (_with("invoice.paid", invoice_obj(amount_remaining="E")).replace(
        b'"E"', b"1e400"), "1e400 is out of range"),
    "5000-digit integer": (_with("invoice.paid", invoice_obj(amount_remaining="D")).replace(
        b'"D"', b"9" * 5000), "payload is not valid JSON"),
    # Types that are not Stripe event types (well-formed unknown ones are acknowledged).
    "type empty": (_with("", invoice_obj()), "type '' is not a Stripe event type"),
    "type a number": (_body({**event("evt_odd", "x", invoice_obj()), "type": 42}),
                      "type is missing or not a str"),
    "type null": (_body({**event("evt_odd", "x", invoice_obj()), "type": None}),
                  "type is missing"),
    "type 500 chars": (_with("invoice." + "x" * 500, invoice_obj()), "not a Stripe event type"),
    "type with spaces": (_with("invoice paid", invoice_obj()), "not a Stripe event type"),
    "type upper case": (_with("Invoice.Paid", invoice_obj()), "not a Stripe event type"),
    "type one word": (_with("invoice", invoice_obj()), "not a Stripe event type"),
    # Missing fields.
    "no id": (_body({k: v for k, v in event("evt_x", "invoice.paid", invoice_obj()).items()
                     if k != "id"}), "id is missing"),
    "no created": (_body({k: v for k, v in event("evt_x", "invoice.paid", invoice_obj()).items()
                          if k != "created"}), "created is missing"),
    "no data": (_body({k: v for k, v in event("evt_x", "invoice.paid", invoice_obj()).items()
                       if k != "data"}), "data is missing"),
    "no object": (_body({**event("evt_odd", "invoice.paid", {}), "data": {}}),
                  "data.object is missing"),
    "object without id": (_with("invoice.paid", {"object": "invoice", "status": "paid"}),
                          "data.object.id is missing"),
    "subscription without status": (_with("customer.subscription.updated", {"id": "sub_1"}),
                                    "data.object.status is missing"),
    "new invoice without amount": (_with("invoice.payment_failed", {
        "id": "in_2", "subscription": "sub_1", "currency": "usd"}), "amount_due is missing"),
}


@pytest.fixture
def open_invoice(subscription) -> Invoice:
    """An open invoice of sub_1 that no refused event may touch."""
    return Invoice.objects.create(subscription=subscription, stripe_invoice_id="in_1",
                                  amount_due=1200, attempt_count=1)


def _billing_state() -> tuple[list[dict], list[dict]]:
    return (list(Invoice.objects.order_by("pk").values()),
            list(Subscription.objects.order_by("pk").values()))


@pytest.mark.parametrize("case", list(ODD_EVENTS))
def test_signed_events_with_odd_values_are_refused_and_kept(open_invoice, case: str) -> None:
    """Every class of odd value (huge times, NUL, deep nesting, wrong types, ill-formed types,
    missing fields) is answered 400, never 500; the event is stored as rejected with the
    reason, and no invoice or subscription changes."""
    body, reason = ODD_EVENTS[case]
    before = _billing_state()
    response = post(body)
    assert response.status_code == 400, response.content
    assert reason in response.json()["error"]
    [record] = StripeEvent.objects.all()
    assert record.outcome == StripeEvent.Outcome.REJECTED
    assert reason in record.detail
    assert record.pk == response.json()["rejected"]
    assert record.body == body.decode().replace("\x00", "\ufffd")
    assert record.payload is None and "\x00" not in record.event_id + record.detail
    assert _billing_state() == before


def test_a_rejected_event_keeps_what_its_envelope_says(open_invoice) -> None:
    """Inspection starts from the id, type, object and time of a rejected event."""
    post(_with("invoice.paid", invoice_obj(amount_due="lots", id="in_9", subscription="sub_1"),
               id="evt_bad", livemode=True))
    record = StripeEvent.objects.get()
    assert (record.event_id, record.type, record.object_id, record.created, record.livemode) \
        == ("evt_bad", "invoice.paid", "in_9", at(T0), True)
    post(_with("invoice.paid", invoice_obj(), id="evt_bad\x00", created=10**20))
    record = StripeEvent.objects.exclude(event_id="evt_bad").get()
    assert (record.event_id, record.created) == ("evt_bad\ufffd", None)


def test_rejections_do_not_stop_the_event_from_being_applied_later(open_invoice) -> None:
    """Stripe redelivers a refused event; each delivery is kept, and once it can be read
    (a fixed handler, a corrected resend) it is applied, once."""
    bad = _with("invoice.paid", invoice_obj(status_transitions={"paid_at": 10**18}),
                id="evt_again")
    assert post(bad).status_code == 400
    assert post(bad).status_code == 400
    good = _with("invoice.paid", invoice_obj(), id="evt_again")
    assert post(good).json()["outcome"] == "applied"
    assert post(good).json()["outcome"] == "duplicate"
    assert sorted(StripeEvent.objects.values_list("outcome", flat=True)) == [
        "applied", "rejected", "rejected"]
    assert Invoice.objects.get().status == Invoice.Status.PAID


def test_brackets_and_quotes_inside_strings_are_not_nesting(open_invoice) -> None:
    """The depth check reads JSON structure, not characters: a description full of brackets
    and escaped quotes is an ordinary event."""
    description = '[[[[{{{{ "quoted \\\\" [[[[' * 200
    response = post(event("evt_text", "invoice.paid", invoice_obj(description=description)))
    assert response.status_code == 200 and response.json()["outcome"] == "applied"
    assert StripeEvent.objects.get().payload["data"]["object"]["description"] == description


def test_unknown_but_well_formed_types_are_still_acknowledged(open_invoice) -> None:
    for n, type_ in enumerate(["charge.refunded", "v2.core.event_destination.ping",
                               "invoice.payment_action_required"]):
        response = post(event(f"evt_u{n}", type_, {"id": "ch_1"}))
        assert (response.status_code, response.json()["outcome"]) == (200, "ignored")


def test_a_valid_event_still_applies_after_the_checks(open_invoice) -> None:
    response = post(event("evt_ok", "invoice.payment_failed", invoice_obj(
        attempt_count=2, description="Ünïcode ✓ and\\ttabs",
        last_finalization_error={"message": "Your card was declined."})))
    assert (response.status_code, response.json()["outcome"]) == (200, "applied")
    open_invoice.refresh_from_db()
    assert (open_invoice.attempt_count, open_invoice.last_error) == (
        2, "Your card was declined.")


@pytest.mark.parametrize("error", [DataError("value too long for type character varying"),
                                   IntegrityError("violates check constraint"),
                                   TypeError("'NoneType' object is not subscriptable"),
                                   OverflowError("date value out of range")])
def test_unforeseen_errors_are_refused_not_500(open_invoice, monkeypatch, error) -> None:
    """A failure the checks do not foresee would repeat on every redelivery: 400, kept as
    rejected with the error, and the handler's partial work rolled back."""
    def failing(parsed):
        Invoice.objects.filter(pk=open_invoice.pk).update(status=Invoice.Status.VOID)
        raise error

    monkeypatch.setattr(webhooks, "_invoice_paid", failing)
    before = _billing_state()
    response = post(event("evt_boom", "invoice.paid", invoice_obj()))
    assert response.status_code == 400
    record = StripeEvent.objects.get()
    assert (record.event_id, record.outcome) == ("evt_boom", "rejected")
    assert record.detail.startswith(f"{type(error).__name__}: ")
    assert _billing_state() == before


def test_a_database_outage_while_recording_a_rejection_is_503(open_invoice,
                                                              monkeypatch) -> None:
    """Nothing could be kept: the redelivery is the only copy, so ask for it (5xx)."""
    def unavailable(*args):
        raise OperationalError("connection to server was lost")

    monkeypatch.setattr(views, "record_rejected", unavailable)
    response = post(_with("invoice.paid", invoice_obj(), created=10**20))
    assert response.status_code == 503


def test_a_lock_timeout_is_503_and_the_redelivery_applies(transactional_db, community) -> None:
    """A transient database error (here a real lock timeout on PostgreSQL) is the one case
    worth Stripe's retry: 503, nothing recorded, and the same event applies next time."""
    subscription = Subscription.objects.create(
        community=community, plan="Member", amount_cents=1200, stripe_customer_id="cus_1",
        stripe_subscription_id="sub_1")
    invoice = Invoice.objects.create(subscription=subscription, stripe_invoice_id="in_1",
                                     amount_due=1200)
    locked, release = threading.Event(), threading.Event()

    def hold_lock() -> None:
        try:
            with transaction.atomic():
                Invoice.objects.select_for_update().get(pk=invoice.pk)
                locked.set()
                release.wait(10)
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold_lock)
    holder.start()
    try:
        assert locked.wait(10)
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '200ms'")
        payload = event("evt_locked", "invoice.paid", invoice_obj())
        response = post(payload)
        assert response.status_code == 503
        assert not StripeEvent.objects.exists()
    finally:
        release.set()
        holder.join(10)
        with connection.cursor() as cursor:
            cursor.execute("RESET lock_timeout")
    assert post(payload).json()["outcome"] == "applied"
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PAID


def test_a_concurrent_event_creating_the_same_invoice_is_503(transactional_db,
                                                               community) -> None:
    """Two events about a new invoice at once: the second's insert meets the first's row
    (a unique violation). Retrying goes through, so it is 503, not a rejection."""
    Subscription.objects.create(community=community, plan="Member", amount_cents=1200,
                                stripe_customer_id="cus_1", stripe_subscription_id="sub_1")
    inserted, done = threading.Event(), threading.Event()

    def first_event() -> None:
        try:
            with transaction.atomic():
                Invoice.objects.create(subscription=Subscription.objects.get(),
                                       stripe_invoice_id="in_new", amount_due=1200)
                inserted.set()
                # Commit once the webhook's insert waits on this row's index entry.
                deadline = time.monotonic() + 10
                with connection.cursor() as cursor:
                    while time.monotonic() < deadline:
                        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE "
                                       "wait_event_type = 'Lock' AND pid <> pg_backend_pid()")
                        if cursor.fetchone()[0]:
                            break
                        time.sleep(0.02)
        finally:
            done.set()
            connections.close_all()

    holder = threading.Thread(target=first_event)
    holder.start()
    assert inserted.wait(10)
    payload = event("evt_second", "invoice.payment_failed", invoice_obj(id="in_new"))
    response = post(payload)
    holder.join(10)
    assert done.is_set()
    assert response.status_code == 503
    assert not StripeEvent.objects.exists()
    assert post(payload).json()["outcome"] == "applied"
    assert Invoice.objects.get().first_failed_at == at(T0)
