"""``riskctl acls print|apply``: the per-principal ACLs of the pipeline's roles (clients.acls)."""

from __future__ import annotations

import argparse
import json
import tomllib
from pathlib import Path
from typing import Any

from cli.errors import guarded
from clients.acls import AclError, PrincipalMap, Role, bindings, kafka_acls_commands
from common.settings import Settings

MAX_MAP_BYTES = 1 << 20

ROLES_HELP = ", ".join(r.value for r in Role)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("acls", help="print or create the ACLs of each principal's role",
                       description="Kafka ACLs per principal, generated from the topic list: each role (" + ROLES_HELP +
                                   ") gets exactly the topics, groups and cluster operations it needs (docs/operations.md, Authorization).")
    asub = p.add_subparsers(dest="acls_command", metavar="ACTION", required=True)
    for name, help_text, description, fn in (
        ("print", "print the ACL bindings and the equivalent kafka-acls.sh commands",
         "Print every ALLOW binding of the given principals' roles, then the same as kafka-acls.sh --add commands.", cmd_print),
        ("apply", "create the missing ACL bindings on the cluster (idempotent)",
         "Create the bindings the cluster does not have yet with the AdminClient (existing ACLs are kept, none deleted). "
         "The settings' principal must be allowed to alter ACLs (a super user).", cmd_apply),
    ):
        c = asub.add_parser(name, help=help_text, description=description)
        c.add_argument("--role", action="append", default=[], metavar="ROLE=User:NAME",
                       help=f"a principal in a role (repeatable); roles: {ROLES_HELP}")
        c.add_argument("--principal-map", type=Path, metavar="FILE",
                       help='TOML or JSON file: role = "User:name" or a list of them, e.g. gateway = ["User:gw-hak", "User:gw-yps"]')
        if name == "print":
            c.add_argument("--json", action="store_true", help="one JSON array of bindings instead of the table and commands")
            c.add_argument("--command-config", default="admin.properties", metavar="FILE",
                           help="--command-config of the printed kafka-acls.sh commands (default: admin.properties)")
        c.set_defaults(handler=guarded(f"acls {name}", fn, _errors))


def _errors() -> tuple[type[Exception], ...]:
    from clients.acl_apply import AclApplyError
    return AclError, AclApplyError, tomllib.TOMLDecodeError, json.JSONDecodeError


def principals(args: argparse.Namespace) -> PrincipalMap:
    mapping: dict[str, Any] | None = None
    if args.principal_map is not None:
        path: Path = args.principal_map
        if path.stat().st_size > MAX_MAP_BYTES:
            raise AclError(f"{path}: larger than {MAX_MAP_BYTES} bytes")
        text = path.read_text(encoding="utf-8")
        mapping = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
        if not isinstance(mapping, dict):
            raise AclError(f"{path}: expected a table of role = principal(s)")
    return PrincipalMap.parse(args.role, mapping)


def cmd_print(args: argparse.Namespace, settings: Settings) -> int:
    acls = bindings(settings, principals(args))
    if args.json:
        print(json.dumps([{"principal": b.principal, "resource_type": b.resource_type.value, "resource_name": b.resource_name,
                           "pattern_type": b.pattern_type.value, "operation": b.operation.value, "permission": b.permission,
                           "host": b.host} for b in acls], indent=1))
        return 0
    width = max(len(b.principal) for b in acls)
    for b in acls:
        print(f"{b.principal:<{width}}  {b.permission} {b.operation.value:<16} {b.resource_type.value:<7} "
              f"{b.pattern_type.value:<8} {b.resource_name}")
    print(f"# {len(acls)} bindings; the same with kafka-acls.sh:")
    for line in kafka_acls_commands(acls, settings.kafka_bootstrap_servers, args.command_config):
        print(line)
    return 0


def cmd_apply(args: argparse.Namespace, settings: Settings) -> int:
    from clients.acl_apply import apply_acls  # confluent-kafka's admin client loads only when used

    result = apply_acls(settings, bindings(settings, principals(args)))
    print(f"{result.created} ACL bindings created, {result.present} already present")
    return 0
