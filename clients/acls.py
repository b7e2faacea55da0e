"""Who may do what on the cluster: the ACLs of each role, derived from the topic list.

Kafka's StandardAuthorizer (``allow.everyone.if.no.acl.found=false``) refuses whatever no ACL
allows, so each principal gets exactly the access of its role (docs/operations.md, "Authorization"):

* gateway      writes declarations, gateway batches and centralised declarations;
* scanner      writes scans;
* agency       writes credit events, risk lists and the zero-tariff register, reads the joint findings;
* positioning  writes vehicle and vessel positions;
* shop         writes duty-free purchases;
* worker       reads every input, writes instructions, warnings, findings, shadow scores and dead
               letters, reads and writes its internal topics (changelogs, the re-keyed shopper
               links, Faust's leader topic), its consumer group (APP_ID), idempotent writes;
* station      reads instructions, writes inspection results;
* console      reads instructions, inspection results and risk lists; writes inspection results,
               warning reviews, its audit trail and the analysts' risk-list and credit entries;
* archive      reads every archived topic, its consumer group;
* admin        the topics job (``riskctl topics create``): creates and describes the topics.

Every binding names one topic or group literally, except the groups of stations (one per port,
``{app_id}.station.<port>``) and agencies (``{app_id}.agency.<name>``), which are prefixed.
A topic of ``topic_specs`` that no role here accounts for is an error (``UnassignedTopic``): a new
topic gets its readers and writers here, not the worker's access by default.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from clients import topics as t
from clients.topics import topic_specs
from common.settings import Settings


class Role(StrEnum):
    GATEWAY = "gateway"
    SCANNER = "scanner"
    AGENCY = "agency"
    POSITIONING = "positioning"
    SHOP = "shop"
    WORKER = "worker"
    STATION = "station"
    CONSOLE = "console"
    ARCHIVE = "archive"
    ADMIN = "admin"


class ResourceType(StrEnum):
    TOPIC = "TOPIC"
    GROUP = "GROUP"
    CLUSTER = "CLUSTER"


class PatternType(StrEnum):
    LITERAL = "LITERAL"
    PREFIXED = "PREFIXED"


class Operation(StrEnum):
    READ = "READ"
    WRITE = "WRITE"
    CREATE = "CREATE"
    DESCRIBE = "DESCRIBE"
    DESCRIBE_CONFIGS = "DESCRIBE_CONFIGS"
    IDEMPOTENT_WRITE = "IDEMPOTENT_WRITE"


CLUSTER_NAME = "kafka-cluster"  # the one name of Kafka's cluster resource
# A principal as the broker names it: SCRAM user names and the names that ssl.principal.mapping.rules
# make of certificate subjects. No wildcard: every binding is for one named principal.
PRINCIPAL = re.compile(r"^User:[A-Za-z0-9][A-Za-z0-9._@=,+-]{0,199}$")
MAX_PRINCIPALS = 1000


class AclError(ValueError):
    """A principal map or role name that cannot be turned into ACLs; the message says why."""


class UnassignedTopic(AclError):
    """A topic of ``topic_specs`` that no role reads or writes."""


@dataclass(frozen=True, order=True)
class AclBinding:
    """One ALLOW rule: ``principal`` may ``operation`` on the resource, from any host."""

    principal: str
    resource_type: ResourceType
    resource_name: str
    pattern_type: PatternType
    operation: Operation
    permission: str = "ALLOW"
    host: str = "*"


@dataclass(frozen=True)
class RoleAccess:
    """What one role needs, in full topic and group names."""

    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    creates: tuple[str, ...] = ()  # topics it may create and describe the configuration of (admin)
    groups: tuple[tuple[str, PatternType], ...] = ()
    cluster: tuple[Operation, ...] = ()


# Logical topics each outside party writes (and the worker reads).
GATEWAY_TOPICS = (t.DECLARATIONS, t.DECLARATION_BATCHES, t.CENTRALISED_DECLARATIONS)
AGENCY_TOPICS = (t.CREDIT_EVENTS, t.RISK_LISTS, t.ZERO_TARIFF_REGISTER, t.CREDIT_EVENT_BATCHES)
WORKER_INPUTS = (*GATEWAY_TOPICS, t.SCANS, *AGENCY_TOPICS, t.POSITIONS, t.DUTY_FREE_PURCHASES, t.INSPECTION_RESULTS,
                 t.WARNING_REVIEWS)
WORKER_OUTPUTS = (t.INSTRUCTIONS, t.SHADOW_SCORES, t.WARNINGS, t.JOINT_FINDINGS, t.DEAD_LETTERS)
WORKER_INTERNAL = (t.DUTY_FREE_SHOPPER_LINKS,)  # re-keyed by the worker for itself: written and read back
CONSOLE_READS = (t.INSTRUCTIONS, t.INSPECTION_RESULTS, t.RISK_LISTS)
CONSOLE_WRITES = (t.INSPECTION_RESULTS, t.WARNING_REVIEWS, t.CONSOLE_ACTIONS, t.RISK_LISTS, t.CREDIT_EVENTS)
# What the archive sink reads: archive.tables.ARCHIVED_TOPICS (a unit test keeps the two equal;
# clients sits below archive and cannot import it).
ARCHIVED_TOPICS = (t.DECLARATIONS, t.DECLARATION_BATCHES, t.CENTRALISED_DECLARATIONS, t.SCANS, t.INSTRUCTIONS,
                   t.INSPECTION_RESULTS, t.WARNINGS, t.WARNING_REVIEWS, t.JOINT_FINDINGS, t.CREDIT_EVENTS, t.RISK_LISTS,
                   t.DEAD_LETTERS, t.CONSOLE_ACTIONS, t.SHADOW_SCORES, t.ZERO_TARIFF_REGISTER, t.POSITIONS, t.DUTY_FREE_PURCHASES,
                   t.CREDIT_EVENT_BATCHES)


def archive_group(settings: Settings) -> str:
    """The archive sink's consumer group (as archive.sink.group_id)."""
    return settings.archive_group_id or f"{settings.app_id}-archive"


def console_group(settings: Settings) -> str:
    """The console feed's consumer group (as console.live)."""
    return f"{settings.app_id}-console"


def station_group_prefix(settings: Settings) -> str:
    """Stations consume instructions in one group per port: ``{app_id}.station.<port>`` (portsim.station)."""
    return f"{settings.app_id}.station."


def agency_group_prefix(settings: Settings) -> str:
    return f"{settings.app_id}.agency."


def internal_topics(settings: Settings) -> tuple[str, ...]:
    """The worker's own topics among ``topic_specs``: table changelogs and Faust's leader topic."""
    app = settings.app_id
    return tuple(s.name for s in topic_specs(settings)
                 if (s.name.startswith(f"{app}-") and s.name.endswith("-changelog")) or s.name == f"{app}-__assignor-__leader")


def role_access(settings: Settings) -> dict[Role, RoleAccess]:
    """Each role's access in full names; raises UnassignedTopic if a topic has no role."""
    n = settings.topic

    def full(names: Iterable[str]) -> tuple[str, ...]:
        return tuple(n(name) for name in names)

    internal = internal_topics(settings)
    every_topic = tuple(s.name for s in topic_specs(settings))
    access = {
        Role.GATEWAY: RoleAccess(writes=full(GATEWAY_TOPICS), cluster=(Operation.IDEMPOTENT_WRITE,)),
        Role.SCANNER: RoleAccess(writes=full([t.SCANS]), cluster=(Operation.IDEMPOTENT_WRITE,)),
        Role.AGENCY: RoleAccess(writes=full(AGENCY_TOPICS), reads=full([t.JOINT_FINDINGS]),
                                groups=((agency_group_prefix(settings), PatternType.PREFIXED),),
                                cluster=(Operation.IDEMPOTENT_WRITE,)),
        Role.POSITIONING: RoleAccess(writes=full([t.POSITIONS]), cluster=(Operation.IDEMPOTENT_WRITE,)),
        Role.SHOP: RoleAccess(writes=full([t.DUTY_FREE_PURCHASES]), cluster=(Operation.IDEMPOTENT_WRITE,)),
        Role.WORKER: RoleAccess(reads=(*full(WORKER_INPUTS), *full(WORKER_INTERNAL), *internal),
                                writes=(*full(WORKER_OUTPUTS), *full(WORKER_INTERNAL), *internal),
                                groups=((settings.app_id, PatternType.LITERAL),), cluster=(Operation.IDEMPOTENT_WRITE,)),
        Role.STATION: RoleAccess(reads=full([t.INSTRUCTIONS]), writes=full([t.INSPECTION_RESULTS]),
                                 groups=((station_group_prefix(settings), PatternType.PREFIXED),),
                                 cluster=(Operation.IDEMPOTENT_WRITE,)),
        Role.CONSOLE: RoleAccess(reads=full(CONSOLE_READS), writes=full(CONSOLE_WRITES),
                                 groups=((console_group(settings), PatternType.LITERAL),), cluster=(Operation.IDEMPOTENT_WRITE,)),
        Role.ARCHIVE: RoleAccess(reads=full(ARCHIVED_TOPICS), groups=((archive_group(settings), PatternType.LITERAL),)),
        Role.ADMIN: RoleAccess(creates=every_topic),
    }
    used = {name for a in access.values() if a is not access[Role.ADMIN] for name in (*a.reads, *a.writes)}
    unassigned = [name for name in every_topic if name not in used]
    if unassigned:
        raise UnassignedTopic(f"no role reads or writes topic(s) {', '.join(unassigned)}: give them readers and writers in "
                              "clients/acls.py")
    return access


def role_bindings(principal: str, access: RoleAccess) -> list[AclBinding]:
    out: list[AclBinding] = []
    lit = PatternType.LITERAL
    for name in access.reads:
        out.append(AclBinding(principal, ResourceType.TOPIC, name, lit, Operation.READ))
    for name in access.writes:
        out.append(AclBinding(principal, ResourceType.TOPIC, name, lit, Operation.WRITE))
    for name in access.creates:
        out += [AclBinding(principal, ResourceType.TOPIC, name, lit, op)
                for op in (Operation.CREATE, Operation.DESCRIBE, Operation.DESCRIBE_CONFIGS)]
    for group, pattern in access.groups:
        out.append(AclBinding(principal, ResourceType.GROUP, group, pattern, Operation.READ))
    for op in access.cluster:
        out.append(AclBinding(principal, ResourceType.CLUSTER, CLUSTER_NAME, lit, op))
    return out


@dataclass
class PrincipalMap:
    """Which principals act in which role (one principal may hold several roles)."""

    roles: dict[Role, list[str]] = field(default_factory=dict)

    def add(self, role: str, principal: str) -> None:
        try:
            parsed = Role(role)
        except ValueError:
            raise AclError(f"unknown role {role[:40]!r}: expected one of {', '.join(r.value for r in Role)}") from None
        if not PRINCIPAL.match(principal):
            raise AclError(f"principal {principal[:60]!r} for role {parsed.value}: expected User:<name> "
                           "(letters, digits and . _ @ = , + -; at most 200 characters)")
        if sum(len(v) for v in self.roles.values()) >= MAX_PRINCIPALS:
            raise AclError(f"more than {MAX_PRINCIPALS} principals")
        names = self.roles.setdefault(parsed, [])
        if principal not in names:
            names.append(principal)

    @classmethod
    def parse(cls, pairs: Sequence[str] = (), mapping: Mapping[str, object] | None = None) -> PrincipalMap:
        """From ``ROLE=User:name`` pairs and/or a mapping role -> principal or list of principals
        (a TOML or JSON principal-map file)."""
        out = cls()
        for role, value in (mapping or {}).items():
            values = value if isinstance(value, list) else [value]
            for principal in values:
                if not isinstance(principal, str):
                    raise AclError(f"role {str(role)[:40]!r}: principals are strings like \"User:name\"")
                out.add(str(role), principal)
        for pair in pairs:
            role, sep, principal = pair.partition("=")
            if not sep:
                raise AclError(f"{pair[:60]!r}: expected ROLE=User:name")
            out.add(role.strip(), principal.strip())
        if not out.roles:
            raise AclError("no principals: give --role ROLE=User:name or --principal-map FILE")
        return out


def bindings(settings: Settings, principals: PrincipalMap) -> list[AclBinding]:
    """Every ALLOW binding for the principals' roles, sorted, without duplicates."""
    access = role_access(settings)
    return sorted({b for role, names in principals.roles.items() for p in names for b in role_bindings(p, access[role])})


_ACLS_SH_OPERATION = {Operation.READ: "Read", Operation.WRITE: "Write", Operation.CREATE: "Create",
                      Operation.DESCRIBE: "Describe", Operation.DESCRIBE_CONFIGS: "DescribeConfigs",
                      Operation.IDEMPOTENT_WRITE: "IdempotentWrite"}


def kafka_acls_commands(acls: Sequence[AclBinding], bootstrap: str, command_config: str = "admin.properties") -> list[str]:
    """The same bindings as ``kafka-acls.sh --add`` commands, one per principal and resource."""
    grouped: dict[tuple[str, ResourceType, str, PatternType], list[Operation]] = {}
    for b in acls:
        grouped.setdefault((b.principal, b.resource_type, b.resource_name, b.pattern_type), []).append(b.operation)
    lines = []
    for (principal, rtype, name, pattern), ops in grouped.items():
        argv = ["kafka-acls.sh", "--bootstrap-server", bootstrap, "--command-config", command_config, "--add",
                "--allow-principal", principal]
        argv += [a for op in ops for a in ("--operation", _ACLS_SH_OPERATION[op])]
        argv += ["--cluster"] if rtype is ResourceType.CLUSTER else [f"--{rtype.value.lower()}", name]
        if pattern is PatternType.PREFIXED:
            argv += ["--resource-pattern-type", "prefixed"]
        lines.append(shlex.join(argv))
    return lines
