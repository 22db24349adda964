"""bulk_update's trigger events: published on the jobs bus after the writes, in batches of 10, or not at all."""

import json
from typing import Any

import boto3
import pytest

from steward.jobs.engine import RetryPage
from steward.jobs.models import JobType
from steward.jobs.triggers import TriggerEvent, TriggerPublisher, TriggersNotPublished
from steward.settings import StoreSettings
from steward.types import Channel
from steward.users.models import SubscriptionStatus, UpsertUser
from tests.support.job_engine import listen_to_jobs_bus
from tests.support.jobs import job_context, run_inline
from tests.support.reach import add_contact, services
from tests.support.service import JOBS_BUS

APP = "app-a"


def heard(queue_url: str) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs")
    found: list[dict[str, Any]] = []
    while messages := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
        for message in messages:
            found.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return found


def run(params: dict[str, Any], *, dry_run: bool = False) -> str:
    ctx = job_context(APP, JobType.BULK_UPDATE, params, dry_run=dry_run)
    run_inline(ctx)
    return ctx.job.job_id


def test_field_updates_are_published_per_changed_profile(store: StoreSettings) -> None:
    queue_url = listen_to_jobs_bus()
    users = services().users
    assert not users.upsert_batch(APP, [{"user_id": f"u{n:02d}", "fields": {"plan": "pro"}} for n in range(23)]).failed
    users.upsert(APP, "u00", UpsertUser(fields={"tier": "gold"}))  # already as the job leaves it: no event
    params = {"action": "update_fields", "selection": {"source": "all"}, "set": {"tier": "gold"}, "delete": ["x"]}
    assert run(params, dry_run=True)
    assert heard(queue_url) == []
    job_id = run(params)
    events = heard(queue_url)
    assert sorted(event["detail"]["user_id"] for event in events) == [f"u{n:02d}" for n in range(1, 23)]
    first = next(event for event in events if event["detail"]["user_id"] == "u01")
    assert (first["source"], first["detail-type"]) == ("steward", "Field Updated")
    assert first["detail"] == {
        "app_id": APP,
        "user_id": "u01",
        "job_id": job_id,
        "change_id": f"{job_id}/u01",
        "fields": ["tier", "x"],
    }


def test_suppress_triggers_publishes_none(store: StoreSettings) -> None:
    queue_url = listen_to_jobs_bus()
    assert not services().users.upsert_batch(APP, [{"user_id": "a"}, {"user_id": "b"}]).failed
    run({"action": "update_fields", "selection": {"source": "all"}, "set": {"t": 1}, "suppress_triggers": True})
    assert heard(queue_url) == []
    assert services().user_repository.get(APP, "a").fields == {"t": 1}  # type: ignore[union-attr]


def test_subscription_and_promo_code_events(store: StoreSettings) -> None:
    queue_url = listen_to_jobs_bus()
    users = services().users
    news = services().resources.create(APP, "News", [Channel.EMAIL]).resource_id
    for user_id in ("new", "back"):
        assert not users.upsert_batch(APP, [{"user_id": user_id}]).failed
        add_contact(APP, user_id, "emails", f"{user_id}@example.com")
    users.put_subscription(APP, "back", news, Channel.EMAIL, SubscriptionStatus.UNSUBSCRIBED)
    job_id = run(
        {
            "action": "add_subscription",
            "selection": {"source": "all"},
            "resource_id": news,
            "channel": "email",
            "status": "Subscribed",
            "contact_source": "profile_fields",
            "include_unsafe": True,
        }
    )
    by_user = {event["detail"]["user_id"]: event for event in heard(queue_url)}
    assert by_user["new"]["detail-type"] == "Subscription Added"
    assert by_user["back"]["detail-type"] == "Subscription Status Changed"
    assert by_user["back"]["detail"] == {
        "app_id": APP,
        "user_id": "back",
        "job_id": job_id,
        "change_id": f"{job_id}/back",
        "resource_id": news,
        "channel": "email",
        "status": "Subscribed",
        "previous_status": "Unsubscribed",
    }
    loyalty = services().loyalty
    program_id = loyalty.create_program(APP, "Gold").program_id
    loyalty.add_codes(APP, program_id, ["ONLY"])
    run({"action": "promo_codes", "selection": {"source": "all"}, "operation": "attach", "program_id": program_id})
    (event,) = heard(queue_url)
    assert event["detail-type"] == "Promo Code Attached"
    assert (event["detail"]["code"], event["detail"]["program_id"]) == ("ONLY", program_id)


def _event(n: int) -> TriggerEvent:
    return TriggerEvent("Field Updated", APP, f"u{n}", "job_1", {"fields": ["a"]})


def test_batches_of_ten_and_refused_entries_sent_again() -> None:
    calls: list[list[str]] = []
    refusals = {"u3": 1, "u12": 2}  # how many times PutEvents refuses each entry before taking it
    sleeps: list[float] = []

    def put_events(entries: list[dict[str, Any]]) -> dict[str, Any]:
        users = [json.loads(entry["Detail"])["user_id"] for entry in entries]
        calls.append(users)
        results: list[dict[str, Any]] = []
        for user_id in users:
            if refusals.get(user_id, 0):
                refusals[user_id] -= 1
                results.append({"ErrorCode": "InternalFailure", "ErrorMessage": "try again"})
            else:
                results.append({"EventId": user_id})
        return {"FailedEntryCount": sum(1 for result in results if "ErrorCode" in result), "Entries": results}

    TriggerPublisher(put_events, JOBS_BUS, sleeps.append).publish([_event(n) for n in range(23)])

    assert [len(call) for call in calls] == [10, 1, 10, 1, 1, 3]
    assert calls[1] == ["u3"]
    assert calls[3:5] == [["u12"], ["u12"]]
    assert sleeps == [0.2, 0.2, 0.4]


def test_entries_refused_every_time_retry_the_page_not_fail_its_rows() -> None:
    def put_events(entries: list[dict[str, Any]]) -> dict[str, Any]:
        return {"FailedEntryCount": len(entries), "Entries": [{"ErrorCode": "ThrottlingException"} for _ in entries]}

    with pytest.raises(TriggersNotPublished, match="2 trigger events") as caught:
        TriggerPublisher(put_events, JOBS_BUS, lambda seconds: None).publish([_event(1), _event(2)])
    assert isinstance(caught.value, RetryPage)  # the engine retries the page; its rows are not marked failed


@pytest.mark.parametrize("suppress", [False, True])
def test_the_dry_run_counts_the_events_and_putevents_calls_the_real_run_makes(
    store: StoreSettings, monkeypatch: pytest.MonkeyPatch, suppress: bool
) -> None:
    users = services().users
    assert not users.upsert_batch(APP, [{"user_id": f"u{n:03d}", "fields": {}} for n in range(60)]).failed
    # One work item: every page's events go out together, 10 a call.
    selection = {"source": "all", "total_limit": 55}
    params = {"action": "update_fields", "selection": selection, "set": {"tier": "gold"}, "suppress_triggers": suppress}
    dry = run_inline(job_context(APP, JobType.BULK_UPDATE, params, dry_run=True))
    calls: list[int] = []
    send = TriggerPublisher._send

    def counted(publisher: TriggerPublisher, entries: list[dict[str, Any]]) -> None:
        calls.append(len(entries))
        send(publisher, entries)

    monkeypatch.setattr(TriggerPublisher, "_send", counted)
    run_inline(job_context(APP, JobType.BULK_UPDATE, params, dry_run=False))
    assert (dry.cost.events, dry.cost.put_events_calls) == (sum(calls), len(calls))
    assert (sum(calls), len(calls)) == ((0, 0) if suppress else (55, 6))
