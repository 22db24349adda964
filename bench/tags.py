"""DynamoDB calls and capacity units of device tags, for 1,000 devices tagged through TagService.

Runs the real service against moto and prices every call pynamodb makes
with ``bench.dynamodb.metering`` (DynamoDB's published billing rules, from
the sizes of the items each call touches).

    .venv/bin/python -m bench.tags
"""

from collections.abc import Callable

from moto import mock_aws

from bench.dynamodb import create_tables, metering
from steward.composition import Services
from steward.devices.models import IdentifyDevice, Transport

APP = "bench-app"
SHARDS = 16
DEVICES = 1000


def main() -> None:
    with mock_aws():
        create_tables(SHARDS)
        devices = Services(SHARDS).devices
        tags = Services(SHARDS).tags
        # A real FCM token is about 150 characters.
        ids = [f"fcm:bench-{index:04d}-" + "x" * 140 for index in range(DEVICES)]
        identify = IdentifyDevice(user_id="user-123", transport=Transport.FCM, attributes={"app_version": "5.2.0"})
        for device_id in [*ids, "fcm:leaver-0", "fcm:leaver-3"]:
            devices.identify(APP, device_id, identify)
        tags.change_devices(APP, "mixed", ids[:500], [])
        for tag in ("a", "b", "c"):
            tags.tag(APP, "fcm:leaver-3", tag)

        def bulk(add: list[str], remove: list[str], tag: str = "vip") -> str:
            outcome = tags.change_devices(APP, tag, add, remove)
            if outcome.failed:
                raise RuntimeError(f"{len(outcome.failed)} devices failed")
            return f"+{outcome.added} -{outcome.removed} ={outcome.unchanged}"

        scenarios: list[tuple[str, Callable[[], object]]] = [
            ("PUT tag, 1 device", lambda: tags.tag(APP, ids[0], "solo")),
            ("PUT tag again (unchanged)", lambda: tags.tag(APP, ids[0], "solo")),
            ("DELETE tag, 1 device", lambda: tags.untag(APP, ids[0], "solo")),
            ("bulk add 1,000 new", lambda: bulk(ids, [])),
            ("bulk add 1,000 again (unchanged)", lambda: bulk(ids, [])),
            ("bulk add 500 + remove 500", lambda: bulk(ids[500:], ids[:500], "mixed")),
            ("bulk remove 1,000", lambda: bulk([], ids)),
            ("GET tag devices, page of 200", lambda: tags.list_devices(APP, "mixed", None, 200)),
            ("GET tags, page of 50", lambda: tags.list_tags(APP, None, 50)),
            ("logout, device without tags", lambda: devices.logout(APP, "fcm:leaver-0", None)),
            ("logout, device with 3 tags", lambda: devices.logout(APP, "fcm:leaver-3", None)),
        ]
        print(f"{'1,000 devices, 16 shards':34} {'DynamoDB calls':50} {'refused':>7} {'WCU':>6} {'RCU':>6}  outcome")
        for label, operation in scenarios:
            with metering() as meter:
                result = operation()
            usage, shown = meter.usage, result if isinstance(result, str) else ""
            calls = ", ".join(f"{count} {name}" for name, count in sorted(usage.calls.items()))
            units = f"{usage.write_units:>6} {usage.read_units:>6.1f}"
            print(f"{label:34} {calls:50} {usage.refused:>7} {units}  {shown}")
        print("\nrefused: calls refused by a condition; their writes are priced as if billed.")


if __name__ == "__main__":
    main()
