"""Deleting a user (DELETE /v1/users/{id}, and a retention purge with delete_user_data) takes its devices along."""

from steward.composition import Services
from steward.devices.models import IdentifyDevice, Transport
from steward.settings import StoreSettings
from tests.support.service import new_users

APP = "app-a"


def test_the_users_devices_go_with_it_and_no_one_elses(store: StoreSettings) -> None:
    services = Services(store.shard_count)
    new_users(APP, "leaver", "stayer")
    for device_id, user_id in (("fcm:1", "leaver"), ("fcm:2", "leaver"), ("fcm:3", "stayer")):
        services.devices.identify(APP, device_id, IdentifyDevice(user_id=user_id, transport=Transport.FCM))
    services.tags.tag(APP, "fcm:1", "vip")

    services.user_deletion.delete(APP, "leaver")

    assert services.user_repository.get(APP, "leaver") is None
    assert services.device_repository.get(APP, "fcm:1") is None
    assert services.device_repository.get(APP, "fcm:2") is None
    assert services.device_repository.get(APP, "fcm:3") is not None
    tag = services.tag_repository.get(APP, "vip")
    assert tag is not None
    assert tag.device_count == 0  # the device's tag was released with it
