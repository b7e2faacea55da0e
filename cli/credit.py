"""``riskctl credit show ENTERPRISE``: an enterprise's credit record as the workers hold it, by agency.

Reads the enterprise-credit table's changelog (compacted: the latest record per enterprise wins)
from the start to its end as it was when the command started, and prints the effective state the
policy applies and each agency's entry (policy/credit.py says how the entries combine).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import orjson

from cli.errors import guarded
from clients.topics import TABLE_ENTERPRISE_CREDIT, changelog_topic
from common.settings import Settings
from policy.credit import EnterpriseCredit


class CreditLookupError(RuntimeError):
    """The changelog could not be read to its end."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("credit", help="show an enterprise's credit record by agency",
                       description="Enterprise credit as the workers fold it (policy/credit.py).")
    csub = p.add_subparsers(dest="credit_command", metavar="ACTION", required=True)
    s = csub.add_parser("show", help="print an enterprise's effective credit and each agency's entry",
                        description="Read the enterprise-credit changelog to its end and print the enterprise's effective "
                                    "class, joint penalty and qualifications, then what each agency said (its class, penalty, "
                                    "qualification statuses, last event, time and reason).")
    s.add_argument("enterprise_id", help="the enterprise id (as on its declarations)")
    s.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    s.add_argument("--timeout", type=float, default=60.0, help="seconds to read the changelog to its end (default 60)")
    s.set_defaults(handler=guarded("credit show", cmd_show, lambda: (CreditLookupError,)))


def cmd_show(args: argparse.Namespace, settings: Settings) -> int:
    raw = latest_value(settings, args.enterprise_id.encode(), args.timeout)
    if raw is None:
        print(f"{args.enterprise_id}: no credit record (the policy treats it as general, no qualifications)")
        return 1
    state = EnterpriseCredit.from_bytes(raw)
    if args.json:
        print(orjson.dumps(as_document(args.enterprise_id, state), option=orjson.OPT_INDENT_2).decode())
    else:
        print("\n".join(credit_lines(args.enterprise_id, state)))
    return 0


def latest_value(settings: Settings, key: bytes, timeout_s: float) -> bytes | None:
    """The key's latest value on the enterprise-credit changelog (None: no record, or deleted)."""
    from confluent_kafka import Consumer, TopicPartition

    topic = changelog_topic(settings, TABLE_ENTERPRISE_CREDIT)
    consumer = Consumer({**settings.confluent_config(), "group.id": f"{settings.app_id}.credit-show", "enable.auto.commit": False,
                         "auto.offset.reset": "earliest"})
    try:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            raise CreditLookupError(f"topic {topic} is not there (are the topics created?)")
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in meta.partitions}
        todo = {p for p, (low, high) in ends.items() if high > low}
        consumer.assign([TopicPartition(topic, p, low) for p, (low, _) in ends.items()])
        found: bytes | None = None
        deadline = time.monotonic() + timeout_s
        while todo:
            if time.monotonic() > deadline:
                raise CreditLookupError(f"{topic} not read to its end within {timeout_s:.0f}s")
            for msg in consumer.consume(10_000, timeout=0.5):
                if msg.error():
                    continue
                if msg.key() == key:
                    found = msg.value()
                if msg.offset() >= ends[msg.partition()][1] - 1:
                    todo.discard(msg.partition())
        return found
    finally:
        consumer.close()


def as_document(enterprise_id: str, state: EnterpriseCredit) -> dict[str, Any]:
    return {"enterprise_id": enterprise_id, "effective_class": state.effective_class.value,
            "credit_class": state.credit_class.value, "joint_penalty": state.joint_penalty,
            "qualifications": state.qualifications, "last_event_id": state.last_event_id,
            "agencies": {name: {"credit_class": e.credit_class.value if e.credit_class else None, "joint_penalty": e.joint_penalty,
                                "qualifications": e.qualifications, "last_event_id": e.last_event_id,
                                "last_event_time": e.last_event_time, "last_reason": e.last_reason}
                         for name, e in sorted(state.agencies.items())}}


def credit_lines(enterprise_id: str, state: EnterpriseCredit) -> list[str]:
    """The record as a table: the effective state first, then one line per agency."""
    quals = ", ".join(f"{q} {s}" for q, s in sorted(state.qualifications.items())) or "none"
    lines = [f"enterprise     {enterprise_id}",
             f"effective      {state.effective_class.value}" + (" (joint penalty)" if state.joint_penalty else ""),
             f"class          {state.credit_class.value} (customs' class when customs classified it; else the latest agency's)",
             f"qualifications {quals}", ""]
    if not state.agencies:
        return [*lines, "no agency entries (a record folded before per-agency entries were kept)"]
    lines.append(f"{'agency':<22} {'class':<11} {'penalty':<8} {'qualifications':<38} {'last event':<22} reason")
    for name, e in sorted(state.agencies.items()):
        q = ", ".join(f"{k} {v}" for k, v in sorted(e.qualifications.items())) or "-"
        lines.append(f"{name[:22]:<22} {e.credit_class.value if e.credit_class else '-':<11} {'yes' if e.joint_penalty else '-':<8} "
                     f"{q[:38]:<38} {(e.last_event_time or '-')[:22]:<22} {e.last_reason or '-'}")
    return lines
