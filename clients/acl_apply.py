"""Create the generated ACLs on the cluster (``riskctl acls apply``), idempotently.

The bindings already on the cluster are listed first (DescribeAcls) and only the missing ones are
created, so a second run creates nothing and says so. Nothing is ever deleted: an ACL the
operator added by hand stays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka import admin as ck

from clients.acls import CLUSTER_NAME, AclBinding, PatternType, ResourceType
from common.settings import Settings

_RESOURCE = {ResourceType.TOPIC: ck.ResourceType.TOPIC, ResourceType.GROUP: ck.ResourceType.GROUP,
             ResourceType.CLUSTER: ck.ResourceType.BROKER}
_PATTERN = {PatternType.LITERAL: ck.ResourcePatternType.LITERAL, PatternType.PREFIXED: ck.ResourcePatternType.PREFIXED}


class AclApplyError(RuntimeError):
    """The cluster refused to list or create ACLs; the message says why."""


@dataclass(frozen=True)
class ApplyResult:
    created: int
    present: int


def to_confluent(b: AclBinding) -> ck.AclBinding:
    name = CLUSTER_NAME if b.resource_type is ResourceType.CLUSTER else b.resource_name
    return ck.AclBinding(_RESOURCE[b.resource_type], name, _PATTERN[b.pattern_type], b.principal, b.host,
                         ck.AclOperation[b.operation.value], ck.AclPermissionType[b.permission])


def _key(b: ck.AclBinding) -> tuple[object, ...]:
    return (b.restype, b.name, b.resource_pattern_type, b.principal, b.host, b.operation, b.permission_type)


def existing_acls(admin: ck.AdminClient, timeout_s: float) -> list[ck.AclBinding]:
    # None matches any name, principal and host; confluent-kafka's stubs type them as str only.
    everything = ck.AclBindingFilter(ck.ResourceType.ANY, None, ck.ResourcePatternType.ANY, None, None,  # type: ignore[arg-type]
                                     ck.AclOperation.ANY, ck.AclPermissionType.ANY)
    try:
        return list(admin.describe_acls(everything, request_timeout=timeout_s).result(timeout=timeout_s))
    except KafkaException as exc:
        raise AclApplyError(f"cannot list the cluster's ACLs: {_reason(exc)}") from exc


def apply_acls(settings: Settings, acls: Sequence[AclBinding], timeout_s: float = 30.0, *,
               admin: ck.AdminClient | None = None) -> ApplyResult:
    """Create the bindings the cluster does not have yet. The principal of ``settings`` must be
    allowed to alter ACLs (a super user, or ALTER on the cluster)."""
    admin = admin or ck.AdminClient(settings.confluent_config())
    have = {_key(b) for b in existing_acls(admin, timeout_s)}
    ours = {to_confluent(b): b for b in acls}
    missing = list({_key(c): c for c in ours if _key(c) not in have}.values())
    if missing:
        futures = admin.create_acls(missing, request_timeout=timeout_s)
        failed = []
        for binding, future in futures.items():
            try:
                future.result(timeout=timeout_s)
            except KafkaException as exc:
                b = ours[binding]
                failed.append(f"{b.principal} {b.operation.value} {b.resource_type.value} {b.resource_name}: {_reason(exc)}")
        if failed:
            raise AclApplyError(f"{len(failed)} of {len(missing)} ACL(s) not created: " + "; ".join(failed[:3])
                                + (" ..." if len(failed) > 3 else ""))
    return ApplyResult(created=len(missing), present=len(ours) - len(missing))


def _reason(exc: KafkaException) -> str:
    err = exc.args[0] if exc.args else None
    return err.str() if isinstance(err, KafkaError) else str(exc)
