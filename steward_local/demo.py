"""Seed the local stack with two demo apps (and a few devices) through the real logic."""

from dataclasses import dataclass

from steward.apps.service import AppService
from steward.devices.models import IdentifyDevice, Transport
from steward.devices.repository import DeviceRepository
from steward.devices.service import DeviceService
from steward.tables import bind_tables
from steward_local.stack import Stack
from steward_local.template import store_settings

DEMO_APPS = (("demo-shop", "Demo Shop"), ("demo-news", "Demo News"))
DEMO_DEVICES = (
    ("fcm:demo-token-alice-1", "alice", Transport.FCM),
    ("apns-demo-token-alice-2", "alice", Transport.APNS),
    ("fcm:demo-token-bob-1", "bob", Transport.FCM),
)


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
    apps = AppService()
    devices = DeviceService(DeviceRepository(settings.shard_count))
    seeded = []
    for app_id, name in DEMO_APPS:
        created = apps.bootstrap(app_id, name, key_name="demo")
        seeded.append(DemoApp(app_id, name, created.api_key.api_key, created.admin_password))
    first_app = DEMO_APPS[0][0]
    for device_id, user_id, transport in DEMO_DEVICES:
        devices.identify(first_app, device_id, IdentifyDevice(user_id=user_id, transport=transport))
    return seeded
