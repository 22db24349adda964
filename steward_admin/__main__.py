"""Operator CLI. Bootstrapping an app is deliberately not an API route: it runs with
the operator's own AWS credentials, against the stack's tables.

    python -m steward_admin --stack-name steward-prod create-app --app-id acme --name "Acme"
    python -m steward_admin --stack-name steward-prod create-key --app-id acme --name ops --scopes read,write
    python -m steward_admin --stack-name steward-prod rotate-admin --app-id acme [--reset-totp | --disable-totp]
    python -m steward_admin --stack-name steward-prod verify-audit --app-id acme
    python -m steward_admin --stack-name steward-prod set-max-audiences --app-id acme --max 250

Secrets (API keys, admin password, TOTP secret) are printed once, as JSON.
verify-audit re-walks an app's audit log and exits with status 1 when a link is broken.
"""

import argparse
import getpass
import json
import os
import sys
from typing import Any

import boto3

from steward.apps.models import Scope, TotpChange
from steward.apps.service import AppService
from steward.composition import Services
from steward.errors import StewardError
from steward.settings import StoreSettings
from steward.tables import bind_tables


def main(argv: list[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    settings = _store_settings(arguments.stack_name, arguments.region)
    bind_tables(settings)
    services = Services(settings.shard_count)
    if arguments.command == "verify-audit":
        verification = services.audit_log.verify_chain(arguments.app_id)
        print(verification.model_dump_json(indent=2))
        return 0 if verification.intact else 1
    try:
        if arguments.command == "set-max-audiences":
            result = services.audience_limits.set(arguments.app_id, arguments.max).model_dump(mode="json")
        else:
            result = _run(services.apps, arguments)
    except StewardError as exc:
        print(json.dumps({"error": {"code": exc.code, "message": exc.message, "field": exc.field}}), file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2, default=str))
    return 0


def _run(service: AppService, arguments: argparse.Namespace) -> dict[str, Any]:
    if arguments.command == "create-app":
        password = _password(arguments.password_stdin)
        created = service.bootstrap(arguments.app_id, arguments.name, password, arguments.totp)
        return created.model_dump(mode="json")
    if arguments.command == "create-key":
        return service.create_key(arguments.app_id, arguments.name, arguments.scopes).model_dump(mode="json")
    password = _password(arguments.password_stdin)
    totp = (
        TotpChange.RESET if arguments.reset_totp else TotpChange.DISABLE if arguments.disable_totp else TotpChange.KEEP
    )
    return service.rotate_admin_credentials(arguments.app_id, password, totp).model_dump(mode="json")


def _store_settings(stack_name: str, region: str | None) -> StoreSettings:
    """Table names and shard count come from the deployed stack's outputs."""
    if region:
        os.environ["AWS_DEFAULT_REGION"] = region  # pynamodb follows it too, not only CloudFormation
    cloudformation = boto3.client("cloudformation", region_name=region)
    stack = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
    outputs = {item["OutputKey"]: item["OutputValue"] for item in stack.get("Outputs", [])}
    return StoreSettings(
        apps_table=outputs["AppsTableName"],
        devices_table=outputs["DevicesTableName"],
        profiles_table=outputs["ProfilesTableName"],
        catalog_table=outputs["CatalogTableName"],
        shard_count=int(outputs["ShardCount"]),
    )


def _scopes(text: str) -> list[Scope]:
    try:
        return [Scope(scope.strip()) for scope in text.split(",") if scope.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"scopes are read, write and admin: {exc}") from exc


def _password(from_stdin: bool) -> str | None:
    """A password typed by the operator, or None to generate one."""
    if not from_stdin:
        return None
    return sys.stdin.readline().rstrip("\n") if not sys.stdin.isatty() else getpass.getpass("Admin password: ")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="steward_admin", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--stack-name", required=True, help="the CloudFormation stack Steward was deployed as")
    parser.add_argument("--region", help="AWS region (default: your AWS configuration's)")
    commands = parser.add_subparsers(dest="command", required=True)

    create_app = commands.add_parser("create-app", help="create an app, its admin password and a first admin key")
    create_app.add_argument("--app-id", required=True, help="3-40 of a-z, 0-9 and '-'")
    create_app.add_argument("--name", required=True)
    create_app.add_argument("--totp", action="store_true", help="also require a TOTP code to re-authenticate")
    create_app.add_argument(
        "--password-stdin", action="store_true", help="read the admin password instead of generating one"
    )

    create_key = commands.add_parser("create-key", help="issue another API key for an app")
    create_key.add_argument("--app-id", required=True)
    create_key.add_argument("--name", required=True)
    create_key.add_argument(
        "--scopes", type=_scopes, default="read,write", help="comma-separated: read, write, admin (default read,write)"
    )

    rotate = commands.add_parser("rotate-admin", help="replace the admin password, issue an admin key")
    rotate.add_argument("--app-id", required=True)
    totp = rotate.add_mutually_exclusive_group()
    totp.add_argument(
        "--reset-totp", action="store_true", help="issue a new TOTP secret (default: keep the current one)"
    )
    totp.add_argument("--disable-totp", action="store_true", help="stop requiring a TOTP code")
    rotate.add_argument("--password-stdin", action="store_true")

    verify = commands.add_parser(
        "verify-audit", help="re-walk an app's audit log and report the first broken link (exit status 1)"
    )
    verify.add_argument("--app-id", required=True)

    limit = commands.add_parser(
        "set-max-audiences", help="set how many audiences an app may hold (default 100; refused files do not count)"
    )
    limit.add_argument("--app-id", required=True)
    limit.add_argument("--max", type=int, required=True, help="1-10000")
    return parser


if __name__ == "__main__":
    sys.exit(main())
