"""Seed the local stack with two demo apps (users, devices, segments, tags) through the real logic."""

from dataclasses import dataclass

from steward.composition import Services
from steward.devices.models import IdentifyDevice, Transport
from steward.segments.models import ChangeMembers, CreateSegment, SegmentKind
from steward.tables import bind_tables
from steward.users.models import FieldValue, UpsertUser
from steward_local.stack import Stack
from steward_local.template import store_settings

DEMO_APPS = (("demo-shop", "Demo Shop"), ("demo-news", "Demo News"))
DEMO_USERS: tuple[tuple[str, dict[str, FieldValue | None], str], ...] = (
    ("alice", {"plan": "pro", "age": 34, "signup": "2024-03-01"}, "alice@example.com"),
    ("bob", {"plan": "free", "age": 27, "signup": "2025-07-15"}, "bob@example.com"),
)
DEMO_DEVICES = (
    ("fcm:demo-token-alice-1", "alice", Transport.FCM),
    ("apns-demo-token-alice-2", "alice", Transport.APNS),
    ("fcm:demo-token-bob-1", "bob", Transport.FCM),
)

PRO_PLAN = {"field": "fields.plan", "op": "eq", "value": "pro"}


@dataclass(frozen=True)
class DemoApp:
    id: str
    name: str
    api_key: str
    admin_password: str


def seed(stack: Stack) -> list[DemoApp]:
    tables = stack.physical_ids("AWS::DynamoDB::Table")
    settings = store_settings(tables, int(stack.resolver.parameters["ShardCount"]))
    bind_tables(settings)
    services = Services(settings.shard_count)
    apps, devices, users, segments = services.apps, services.devices, services.users, services.segments
    seeded = []
    for app_id, name in DEMO_APPS:
        created = apps.bootstrap(app_id, name, key_name="demo")
        seeded.append(DemoApp(app_id, name, created.api_key.api_key, created.admin_password))
    first_app = DEMO_APPS[0][0]
    for user_id, fields, email in DEMO_USERS:
        users.upsert(first_app, user_id, UpsertUser(fields=fields))
        users.put_contact(first_app, user_id, "emails", email, active=True)
    for device_id, user_id, transport in DEMO_DEVICES:
        devices.identify(first_app, device_id, IdentifyDevice(user_id=user_id, transport=transport))
    beta = segments.create(first_app, CreateSegment(name="beta-testers", kind=SegmentKind.STATIC))
    segments.change_members(first_app, beta.segment_id, ChangeMembers(add=["alice"]))
    segments.create(first_app, CreateSegment(name="pro-plan", kind=SegmentKind.CRITERIA, criteria=PRO_PLAN))
    services.tags.tag(first_app, DEMO_DEVICES[0][0], "beta")
    return seeded
