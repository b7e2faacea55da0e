"""The ACL model (clients.acls): every topic has its readers and writers, no role writes what it must not."""

from __future__ import annotations

import json
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import admin as ck

from archive.tables import ARCHIVED_TOPICS as ARCHIVE_SINK_TOPICS
from cli.main import main
from clients import acls
from clients import topics as t
from clients.acl_apply import apply_acls, to_confluent
from clients.acls import AclError, Operation, PatternType, PrincipalMap, ResourceType, Role
from common.settings import Settings

S = Settings(app_id="risk-x", topic_prefix="cx.")
EVERY_ROLE = PrincipalMap.parse([f"{r.value}=User:{r.value}-1" for r in Role])


def topics_of(role: Role, op: Operation) -> set[str]:
    return {b.resource_name for b in acls.bindings(S, EVERY_ROLE)
            if b.principal == f"User:{role.value}-1" and b.resource_type is ResourceType.TOPIC and b.operation is op}


def writers(topic: str) -> set[Role]:
    return {r for r in Role if topic in topics_of(r, Operation.WRITE)}


def test_every_topic_has_a_writer_and_a_reader_and_the_admin_creates_it() -> None:
    specs = [s.name for s in t.topic_specs(S)]
    for name in specs:
        assert writers(name), f"nobody writes {name}"
        assert {r for r in Role if name in topics_of(r, Operation.READ)}, f"nobody reads {name}"
    assert topics_of(Role.ADMIN, Operation.CREATE) == set(specs)
    assert topics_of(Role.ADMIN, Operation.WRITE) == topics_of(Role.ADMIN, Operation.READ) == set()


def test_outside_parties_write_only_their_own_topics() -> None:
    full = S.topic
    assert topics_of(Role.GATEWAY, Operation.WRITE) == {full(t.DECLARATIONS), full(t.DECLARATION_BATCHES),
                                                         full(t.CENTRALISED_DECLARATIONS)}
    assert topics_of(Role.SCANNER, Operation.WRITE) == {full(t.SCANS)}
    assert topics_of(Role.AGENCY, Operation.WRITE) == {full(t.CREDIT_EVENTS), full(t.RISK_LISTS), full(t.ZERO_TARIFF_REGISTER),
                                                        full(t.CREDIT_EVENT_BATCHES)}
    assert topics_of(Role.STATION, Operation.WRITE) == {full(t.INSPECTION_RESULTS)}
    for role in (Role.GATEWAY, Role.SCANNER, Role.POSITIONING, Role.SHOP):
        assert topics_of(role, Operation.READ) == set(), f"{role} reads something"
    assert topics_of(Role.ARCHIVE, Operation.WRITE) == set()
    # Only the worker decides: instructions, warnings, findings and every internal topic are its alone.
    for name in (full(t.INSTRUCTIONS), full(t.WARNINGS), full(t.JOINT_FINDINGS), full(t.DEAD_LETTERS), *acls.internal_topics(S)):
        assert writers(name) == {Role.WORKER}, name
    assert writers(full(t.INSPECTION_RESULTS)) == {Role.STATION, Role.CONSOLE}
    assert writers(full(t.DECLARATIONS)) == {Role.GATEWAY}


def test_the_worker_reads_its_inputs_and_its_changelogs_and_owns_its_group() -> None:
    internal = set(acls.internal_topics(S))
    assert f"risk-x-{t.TABLE_DECLARATION_STATE}-changelog" in internal and "risk-x-__assignor-__leader" in internal
    reads = topics_of(Role.WORKER, Operation.READ)
    assert internal <= reads and {S.topic(n) for n in acls.WORKER_INPUTS} <= reads
    assert S.topic(t.INSTRUCTIONS) not in reads  # it writes instructions and never reads them back
    groups = {(b.principal, b.resource_name, b.pattern_type) for b in acls.bindings(S, EVERY_ROLE)
              if b.resource_type is ResourceType.GROUP}
    assert ("User:worker-1", "risk-x", PatternType.LITERAL) in groups
    assert ("User:station-1", "risk-x.station.", PatternType.PREFIXED) in groups
    assert ("User:archive-1", "risk-x-archive", PatternType.LITERAL) in groups
    assert ("User:console-1", "risk-x-console", PatternType.LITERAL) in groups
    assert not any(p in ("User:gateway-1", "User:scanner-1") for p, _, _ in groups)


def test_the_archive_reads_what_the_archive_sink_archives() -> None:
    assert set(acls.ARCHIVED_TOPICS) == set(ARCHIVE_SINK_TOPICS)


def test_a_topic_without_a_role_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    extra = t.TopicSpec(S.topic("new-topic"), 1, "k", "a topic nobody placed")
    monkeypatch.setattr(acls, "topic_specs", lambda s: [*t.topic_specs(s), extra])
    with pytest.raises(acls.UnassignedTopic, match=r"cx\.new-topic"):
        acls.role_access(S)


@pytest.mark.parametrize("pairs, message", [
    (["gatekeeper=User:a"], "unknown role"),
    (["gateway=alice"], "expected User:<name>"),
    (["gateway=User:*"], "expected User:<name>"),
    (["gateway=User:a b"], "expected User:<name>"),
    (["gateway"], "expected ROLE=User:name"),
    ([], "no principals"),
])
def test_bad_principal_maps_are_refused(pairs: list[str], message: str) -> None:
    with pytest.raises(AclError, match=message):
        PrincipalMap.parse(pairs)


def test_principal_count_is_bounded() -> None:
    with pytest.raises(AclError, match="more than"):
        PrincipalMap.parse([f"gateway=User:g{i}" for i in range(acls.MAX_PRINCIPALS + 1)])


def test_kafka_acls_commands_group_operations_per_resource() -> None:
    lines = acls.kafka_acls_commands(acls.bindings(S, PrincipalMap.parse(["worker=User:w", "station=User:st"])), "b:9093")
    assert ("kafka-acls.sh --bootstrap-server b:9093 --command-config admin.properties --add --allow-principal User:w "
            "--operation Read --operation Write --topic cx.duty-free-shopper-links") in lines
    assert any(line.endswith("--group risk-x.station. --resource-pattern-type prefixed") for line in lines)
    assert any("--operation IdempotentWrite --cluster" in line for line in lines)


class FakeAdmin:
    """DescribeAcls and CreateAcls over a list, as the broker keeps them."""

    def __init__(self) -> None:
        self.acls: list[ck.AclBinding] = []
        self.create_calls = 0

    def describe_acls(self, _filter: Any, request_timeout: float) -> Future[list[ck.AclBinding]]:
        f: Future[list[ck.AclBinding]] = Future()
        f.set_result(list(self.acls))
        return f

    def create_acls(self, bindings: list[ck.AclBinding], request_timeout: float) -> dict[ck.AclBinding, Future[None]]:
        self.create_calls += 1
        out = {}
        for b in bindings:
            self.acls.append(b)
            f: Future[None] = Future()
            f.set_result(None)
            out[b] = f
        return out


def test_apply_creates_only_what_is_missing() -> None:
    admin = FakeAdmin()
    wanted = acls.bindings(S, PrincipalMap.parse(["gateway=User:gw", "worker=User:w"]))
    first = apply_acls(S, wanted, admin=admin)  # type: ignore[arg-type]
    assert (first.created, first.present) == (len(wanted), 0)
    assert apply_acls(S, wanted, admin=admin).created == 0  # type: ignore[arg-type]
    assert admin.create_calls == 1 and len(admin.acls) == len(wanted)
    cluster = to_confluent(next(b for b in wanted if b.resource_type is ResourceType.CLUSTER))
    assert (cluster.restype, cluster.name, cluster.operation) == (ck.ResourceType.BROKER, "kafka-cluster",
                                                                  ck.AclOperation.IDEMPOTENT_WRITE)


def test_cli_print_reads_a_principal_map(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_ID", "risk-x")
    monkeypatch.setenv("TOPIC_PREFIX", "cx.")
    path = tmp_path / "principals.toml"
    path.write_text('gateway = ["User:gw-hak", "User:gw-yps"]\nscanner = "User:ct-1"\n')
    assert main(["acls", "print", "--principal-map", str(path), "--role", "worker=User:w", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert {b["principal"] for b in printed} == {"User:gw-hak", "User:gw-yps", "User:ct-1", "User:w"}
    assert {b["resource_name"] for b in printed if b["principal"] == "User:ct-1" and b["operation"] == "WRITE"} == {"cx.scans"}
    path.write_text('gateway = 3\n')
    assert main(["acls", "print", "--principal-map", str(path)]) == 2
    assert "principals are strings" in capsys.readouterr().err
