"""The subscription rules of bulk_update's add_subscription and update_subscription, as pure functions.

Unsafe statuses (Unsubscribed, Complainer, Hardbounced, Invalid) protect
people who left or whose address fails: setting Subscribed never overrides
one, and a ``resource`` contact source never copies from one, unless the
job says ``include_unsafe``. Each skip carries its reason for the report.
"""

from collections.abc import Sequence

from steward.devices.models import Device
from steward.jobs.params import BulkAction, BulkUpdateParams, ContactSource
from steward.types import Channel
from steward.users.models import UNSAFE_STATUSES, Subscription, SubscriptionStatus, User

UNCHANGED = "unchanged"
NO_SUBSCRIPTION = "no_subscription"
UNSAFE_STATUS = "unsafe_status"
SOURCE_UNSAFE_STATUS = "source_unsafe_status"
NO_SOURCE_SUBSCRIPTION = "no_source_subscription"
NO_CONTACT = "no_contact"
TOO_MANY_SUBSCRIPTIONS = "too_many_subscriptions"
PHONE_CHANNELS = frozenset({Channel.SMS, Channel.WHATSAPP, Channel.VIBER})


def subscription_of(user: User, resource_id: str, channel: Channel) -> Subscription | None:
    return next(
        (item for item in user.subscriptions if (item.resource_id, item.channel) == (resource_id, channel)), None
    )


def has_contact(user: User, channel: Channel, devices: Sequence[Device]) -> bool:
    """Whether the profile itself holds an active contact for ``channel``."""
    if channel is Channel.PUSH:
        return any(device.active for device in devices)
    contacts = user.emails if channel is Channel.EMAIL else user.phones
    return any(contact.active for contact in contacts)


def needs_devices(params: BulkUpdateParams) -> bool:
    """Whether the rule reads the profiles' devices: push subscriptions added from the profile's contacts."""
    return (
        params.action is BulkAction.ADD_SUBSCRIPTION
        and params.contact_source is ContactSource.PROFILE_FIELDS
        and params.channel is Channel.PUSH
    )


NEW = "new"
_WAS = "was "


def change_detail(params: BulkUpdateParams, user: User) -> str:
    """The report's detail of a subscription change: ``new``, or the status it replaces (``was Unsubscribed``)."""
    assert params.resource_id is not None
    assert params.channel is not None
    current = subscription_of(user, params.resource_id, params.channel)
    return NEW if current is None else f"{_WAS}{current.status.value}"


def previous_status(detail: str) -> str | None:
    """The status a change replaced, from its detail; None for a new subscription."""
    return detail.removeprefix(_WAS) if detail.startswith(_WAS) else None


def changed_subscription(
    params: BulkUpdateParams, user: User, devices: Sequence[Device]
) -> tuple[Subscription | None, str]:
    """The subscription the action leaves on ``user``, or None and why the profile is skipped (or unchanged)."""
    assert params.resource_id is not None
    assert params.channel is not None
    assert params.status is not None
    current = subscription_of(user, params.resource_id, params.channel)
    wanted = Subscription(resource_id=params.resource_id, channel=params.channel, status=params.status)
    guarded = params.status is SubscriptionStatus.SUBSCRIBED and not params.unsafe_allowed
    if params.action is BulkAction.UPDATE_SUBSCRIPTION and current is None:
        return None, NO_SUBSCRIPTION
    if current is not None and current.status is params.status:
        return None, UNCHANGED
    if guarded and current is not None and current.status in UNSAFE_STATUSES:
        return None, f"{UNSAFE_STATUS}: {current.status.value}"
    if params.action is BulkAction.ADD_SUBSCRIPTION:
        reason = _no_contact(params, user, devices)
        if reason:
            return None, reason
    return wanted, ""


def _no_contact(params: BulkUpdateParams, user: User, devices: Sequence[Device]) -> str:
    """Why add_subscription finds no contact for the profile ("" when it does)."""
    assert params.channel is not None
    if params.contact_source is ContactSource.PROFILE_FIELDS:
        return "" if has_contact(user, params.channel, devices) else NO_CONTACT
    assert params.source_resource_id is not None
    source = subscription_of(user, params.source_resource_id, params.channel)
    if source is None:
        return NO_SOURCE_SUBSCRIPTION
    if source.status in UNSAFE_STATUSES and not params.unsafe_allowed:
        return f"{SOURCE_UNSAFE_STATUS}: {source.status.value}"
    return ""
