"""``riskctl console`` (the officers' and analysts' web console) and ``riskctl users`` (its user store)."""

from __future__ import annotations

import argparse
import getpass
import logging
import secrets
import sys
from typing import Any

from common.cliargs import tcp_port
from common.settings import Settings

# console.* (FastAPI, uvicorn, argon2) is imported when a subcommand runs: `riskctl --help` stays fast.

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("console", help="run the web console for inspection officers and risk analysts",
                       description="Serve the console (FastAPI + uvicorn): officers' live queue and inspection results, analysts' "
                                   "risk lists, credit actions, figures and dead letters. Listens on CONSOLE_HOST:CONSOLE_PORT "
                                   "(127.0.0.1:8470); HTTPS when CONSOLE_TLS_CERTFILE and CONSOLE_TLS_KEYFILE are set. Users "
                                   "come from `riskctl users`.")
    p.add_argument("--host", default=None, help="listen address (default from settings: 127.0.0.1)")
    p.add_argument("--port", type=tcp_port, default=None, help="listen port (default from settings: 8470)")
    p.add_argument("--metrics-port", type=tcp_port, default=None, help="Prometheus endpoint port (0 disables; default from settings: 9467)")
    p.set_defaults(handler=cmd_console)

    p = sub.add_parser("users", help="add, list, disable or enable console users",
                       description="Manage the console's user store (CONSOLE_USERS_FILE, default <DATA_DIR>/console/users.json). "
                                   "Every change is also published to the console-actions topic when a broker is reachable.")
    usub = p.add_subparsers(dest="users_command", metavar="ACTION", required=True)
    c = usub.add_parser("add", help="add a user", description="Add a user with a role; an officer is bound to one or more ports "
                                                              "of the policy's port register.")
    c.add_argument("name", help="user name: lower-case letters, digits, '.', '_', '-' (2-64)")
    c.add_argument("--role", required=True, choices=["officer", "analyst", "supervisor"], help="what the user may do")
    c.add_argument("--port", action="append", default=[], help="a port the officer works at (repeat for more)")
    c.add_argument("--station", default=None, help="station id on the officer's inspection results (default: the user name)")
    group = c.add_mutually_exclusive_group()
    group.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    group.add_argument("--generate-password", action="store_true", help="generate a password and print it once")
    c.add_argument("--no-publish", action="store_true", help="do not publish the change to the console-actions topic")
    c.set_defaults(handler=cmd_users_add)
    c = usub.add_parser("list", help="list the users", description="Print every user: name, role, ports, station, state.")
    c.add_argument("--json", action="store_true", help="one JSON object per user")
    c.set_defaults(handler=cmd_users_list)
    for name, verb in (("disable", "disable"), ("enable", "enable")):
        c = usub.add_parser(name, help=f"{verb} a user", description=f"{verb.capitalize()} a user: it takes effect at their next request.")
        c.add_argument("name")
        c.add_argument("--no-publish", action="store_true", help="do not publish the change to the console-actions topic")
        c.set_defaults(handler=cmd_users_disable if name == "disable" else cmd_users_enable)


def cmd_console(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn
    from prometheus_client import start_http_server

    from console.app import create_app, users_path

    updates: dict[str, Any] = {}
    if args.host is not None:
        updates["console_host"] = args.host
    if args.port is not None:
        updates["console_port"] = args.port
    if args.metrics_port is not None:
        updates["console_metrics_port"] = args.metrics_port
    settings = settings.model_copy(update=updates)
    if not users_path(settings).exists():
        print(f"riskctl console: warning: no user store at {users_path(settings)}: add users with `riskctl users add`", file=sys.stderr)
    if settings.console_metrics_port:
        start_http_server(settings.console_metrics_port, addr=settings.metrics_host)
    app = create_app(settings)
    scheme = "https" if settings.console_tls_certfile else "http"
    log.info("console on %s://%s:%d/", scheme, settings.console_host, settings.console_port)
    uvicorn.run(app, host=settings.console_host, port=settings.console_port, log_level=settings.log_level.lower(),
                ssl_certfile=str(settings.console_tls_certfile) if settings.console_tls_certfile else None,
                ssl_keyfile=str(settings.console_tls_keyfile) if settings.console_tls_keyfile else None,
                # Only a named proxy may say who the user is (console.throttle counts failed logins per address).
                proxy_headers=settings.console_trusted_proxies is not None,
                forwarded_allow_ips=settings.console_trusted_proxies,
                server_header=False, access_log=False,
                timeout_graceful_shutdown=5)  # open live queues (server-sent events) never end by themselves
    return 0


def _store(settings: Settings) -> Any:
    from console.app import users_path
    from console.users import UserStore

    return UserStore(users_path(settings))


def _publish_change(settings: Settings, args: argparse.Namespace, action: str, subject: str, detail: str) -> None:
    """The change as a console action (the user store is the truth: a broker that cannot be reached is a warning)."""
    if args.no_publish:
        return
    from console.publish import Publisher, PublishError, action_record, console_action
    from schemas import ConsoleActionKind, ConsoleRole

    who = "".join(c for c in getpass.getuser().lower() if c.isalnum() or c in "._-")[:64] or "unknown"
    try:
        publisher = Publisher(settings)
        publisher.send_many([action_record(console_action(who, ConsoleRole.CLI, ConsoleActionKind(action), subject, detail))])
    except PublishError as exc:
        print(f"riskctl users: warning: the change is made but not published to console-actions ({exc}); "
              "use --no-publish when no broker runs", file=sys.stderr)


def cmd_users_add(args: argparse.Namespace, settings: Settings) -> int:
    from console.app import port_register
    from console.users import Role, UserStoreError

    if args.generate_password:
        password = secrets.token_urlsafe(12)
    elif args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            print("riskctl users add: error: the passwords differ", file=sys.stderr)
            return 2
    try:
        user = _store(settings).add(args.name, Role(args.role), password, tuple(args.port), args.station,
                                    known_ports=set(port_register(settings)))
    except UserStoreError as exc:
        print(f"riskctl users add: error: {exc}", file=sys.stderr)
        return 2
    print(f"added {user.name} ({user.role.value}{', ports ' + ', '.join(user.ports) if user.ports else ''})")
    if args.generate_password:
        print(f"password: {password}")
    _publish_change(settings, args, "user-added", user.name, f"role {user.role.value}; ports {', '.join(user.ports) or '-'}")
    return 0


def cmd_users_list(args: argparse.Namespace, settings: Settings) -> int:
    import orjson

    from console.users import UserStoreError

    try:
        users = _store(settings).all()
    except UserStoreError as exc:
        print(f"riskctl users list: error: {exc}", file=sys.stderr)
        return 2
    for u in users:
        if args.json:
            print(orjson.dumps(u.model_dump(mode="json", exclude={"password_hash"})).decode())
        else:
            print(f"{u.name:24} {u.role.value:10} {'disabled' if u.disabled else 'active':8} {','.join(u.ports) or '-':24} "
                  f"{u.station_id or '-'}")
    return 0


def _set_disabled(args: argparse.Namespace, settings: Settings, disabled: bool) -> int:
    from console.users import UserStoreError

    try:
        user = _store(settings).set_disabled(args.name, disabled)
    except UserStoreError as exc:
        print(f"riskctl users {'disable' if disabled else 'enable'}: error: {exc}", file=sys.stderr)
        return 2
    print(f"{user.name} {'disabled' if disabled else 'enabled'}")
    _publish_change(settings, args, "user-disabled" if disabled else "user-enabled", user.name, "")
    return 0


def cmd_users_disable(args: argparse.Namespace, settings: Settings) -> int:
    return _set_disabled(args, settings, True)


def cmd_users_enable(args: argparse.Namespace, settings: Settings) -> int:
    return _set_disabled(args, settings, False)
