"""What the user use cases do to a user, as pure functions (read-modify-write in the repository)."""

from collections.abc import Iterable
from datetime import datetime

from steward.errors import InvalidInput, NotFound
from steward.users.models import (
    CONTACT_DEACTIVATED_BY_JOB,
    MAX_CONTACTS,
    MAX_FIELDS,
    MAX_FIELDS_BYTES,
    MAX_SUBSCRIPTIONS,
    Contact,
    Subscription,
    UpsertUser,
    User,
    fields_bytes,
)


def upsert(current: User | None, user_id: str, request: UpsertUser, now: datetime) -> User:
    """Create the user or merge fields into it (a null value removes the field)."""
    base = current or User(
        user_id=user_id,
        fields={},
        created_at=now,
        updated_at=now,
        last_activity_at=None,
        active=True,
        deactivated_at=None,
        deactivation_reason=None,
        global_unsubscribed=False,
        emails=[],
        phones=[],
        subscriptions=[],
        promo_codes=[],
    )
    fields = dict(base.fields)
    for name, value in request.fields.items():
        if value is None:
            fields.pop(name, None)
        else:
            fields[name] = value
    if len(fields) > MAX_FIELDS:
        raise InvalidInput(f"A user holds at most {MAX_FIELDS} fields.", code="too_many_fields", field="fields")
    size = fields_bytes(fields)
    if size > MAX_FIELDS_BYTES:
        raise InvalidInput(
            f"A user's fields take at most {MAX_FIELDS_BYTES} bytes of JSON; these would take {size}.",
            code="fields_too_large",
            field="fields",
        )
    unsubscribed = base.global_unsubscribed if request.global_unsubscribed is None else request.global_unsubscribed
    return base.model_copy(
        update={
            "fields": fields,
            "global_unsubscribed": unsubscribed,
            "updated_at": now,
            "last_activity_at": _activity(current, request, now),
        }
    )


def _activity(current: User | None, request: UpsertUser, now: datetime) -> datetime:
    """Every upsert through the API is activity of the user, unless it brings the user's history along.

    A migrated last activity is the user's on creation, and never moves an existing user's value backwards.
    """
    given = request.last_activity_at
    if given is None:
        return now
    known = None if current is None else current.last_activity_at
    return given if known is None or given > known else known


def put_contact(user: User, kind: str, address: str, active: bool, now: datetime) -> User:
    """Add or update an email (kind "emails") or phone (kind "phones")."""
    contacts: list[Contact] = list(getattr(user, kind))
    existing = next((contact for contact in contacts if contact.address == address), None)
    if existing is not None:
        if existing.active == active:
            return user
        contacts = [contact for contact in contacts if contact.address != address]
        deactivated_at = None if active else now
        contacts.append(
            existing.model_copy(
                update={"active": active, "deactivated_at": deactivated_at, "deactivation_reason": None}
            )
        )
    else:
        if len(contacts) >= MAX_CONTACTS:
            raise InvalidInput(
                f"A user holds at most {MAX_CONTACTS} {kind}.", code="too_many_contacts", field=kind.rstrip("s")
            )
        contacts.append(Contact(address=address, active=active, added_at=now))
    return user.model_copy(update={kind: sorted(contacts, key=lambda item: item.address), "updated_at": now})


def remove_contact(user: User, kind: str, address: str, now: datetime) -> User:
    contacts: list[Contact] = getattr(user, kind)
    if all(contact.address != address for contact in contacts):
        raise NotFound(f"The user has no such {kind.rstrip('s')}.", code="contact_not_found", field=kind.rstrip("s"))
    kept = [contact for contact in contacts if contact.address != address]
    return user.model_copy(update={kind: kept, "updated_at": now})


def put_subscription(user: User, subscription: Subscription, now: datetime) -> User:
    others = [
        item
        for item in user.subscriptions
        if (item.resource_id, item.channel) != (subscription.resource_id, subscription.channel)
    ]
    if subscription in user.subscriptions:
        return user
    if len(others) >= MAX_SUBSCRIPTIONS:
        raise InvalidInput(
            f"A user holds at most {MAX_SUBSCRIPTIONS} subscriptions.", code="too_many_subscriptions", field="channel"
        )
    subscriptions = sorted([*others, subscription], key=lambda item: (item.resource_id, item.channel))
    return user.model_copy(update={"subscriptions": subscriptions, "updated_at": now})


def deactivate_contacts(user: User, kind: str, addresses: Iterable[str], now: datetime) -> User:
    """A maintenance job deactivates some of the user's emails (kind "emails") or phones ("phones").

    Addresses the user does not have, or whose contact is inactive, are left
    alone; ``user`` itself comes back when nothing changes.
    """
    targets = set(addresses)
    contacts: list[Contact] = getattr(user, kind)
    changed = [
        contact.model_copy(
            update={"active": False, "deactivated_at": now, "deactivation_reason": CONTACT_DEACTIVATED_BY_JOB}
        )
        if contact.active and contact.address in targets
        else contact
        for contact in contacts
    ]
    if changed == contacts:
        return user
    return user.model_copy(update={kind: changed, "updated_at": now})


def deactivated_by_job_at(contact: Contact, now: datetime) -> bool:
    """Whether ``contact`` is as a job that ran at ``now`` left it: how a retried job recognises its own work."""
    return (
        not contact.active
        and contact.deactivation_reason == CONTACT_DEACTIVATED_BY_JOB
        and contact.deactivated_at == now
    )
