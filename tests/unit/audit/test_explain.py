"""``riskctl explain`` formatting (pure; the broker read is covered by the integration suite)."""

from __future__ import annotations

import json

from audit.explain import explanation, format_explanation
from cli.main import main


def instruction(stage: str, action: str, revision: int = 1, **over) -> dict:
    doc = {
        "schema_version": 1, "instruction_id": f"D1:{revision}:{stage}", "declaration_id": "D1", "revision": revision,
        "port": "HAK-SEA", "enterprise_id": "E1", "scenario": "general-trade", "stage": stage, "action": action,
        "final": stage != "declaration" or action != "machine-check", "selection_reason": "model-threshold",
        "credit_class": "general", "score": 0.61234, "model_version": "m-abc/general", "policy_version": "2026.11-default-2",
        "risk_hits": ["ANTI-SMUG/RL-1"], "reasons": ["risk score 0.61 >= machine-check threshold 0.55 (general)"],
        "suspected_categories": [], "scan_id": None, "event_time": "2026-11-28T10:00:00Z", "decided_at": "2026-11-28T10:00:01Z",
    }
    doc.update(over)
    return doc


def test_instructions_are_deduplicated_and_ordered_by_revision_and_stage():
    scan = instruction("scan", "inspect", selection_reason="scan", scan_id="SC1", suspected_categories=["cigarettes"],
                       reasons=["scan SC1 (x-ray) suspicious: cigarettes; anomaly score 0.91"])
    first = instruction("declaration", "machine-check")
    other = dict(instruction("declaration", "release"), declaration_id="D2")
    doc = explanation("D1", [scan, first, scan, other, first])
    assert [r["instruction_id"] for r in doc["instructions"]] == ["D1:1:declaration", "D1:1:scan"]
    assert doc["outcome"] == {"revision": 1, "action": "inspect", "stage": "scan", "final": True, "instruction_id": "D1:1:scan"}
    json.dumps(doc)


def test_text_shows_everything_an_officer_needs():
    scan = instruction("scan", "inspect", selection_reason="scan", scan_id="SC1", suspected_categories=["cigarettes"])
    text = format_explanation(explanation("D1", [instruction("declaration", "machine-check"), scan]))
    assert text.splitlines()[0] == "declaration D1: inspect (final, revision 1, stage scan)"
    for expected in ("[declaration] MACHINE-CHECK (pre-determined, not final)", "[scan] INSPECT", "selected by    model-threshold",
                     "credit class   general", "score          0.612   model m-abc/general", "policy         2026.11-default-2",
                     "risk lists     ANTI-SMUG/RL-1", "scan           SC1  suspected: cigarettes",
                     "    - risk score 0.61 >= machine-check threshold 0.55 (general)"):
        assert expected in text
    assert text.index("[declaration]") < text.index("[scan]")


def test_pending_machine_check_and_a_later_revision():
    rows = [instruction("declaration", "release", revision=1), instruction("declaration", "machine-check", revision=2)]
    doc = explanation("D1", rows)
    assert doc["outcome"]["revision"] == 2 and not doc["outcome"]["final"]
    assert "pending (awaiting the scan)" in format_explanation(doc)


def test_instructions_without_the_newer_fields_still_format():
    old = instruction("timeout", "inspect", selection_reason="timeout", score=None, model_version=None)
    del old["risk_hits"]
    text = format_explanation(explanation("D1", [old]))
    assert "risk lists     no hits" in text and "score          -   model -" in text


def test_nothing_found():
    doc = explanation("D9", [])
    assert doc == {"declaration_id": "D9", "instructions": [], "outcome": None}
    assert format_explanation(doc) == "no instructions found for declaration D9"


def test_unreachable_broker_is_a_one_line_error(monkeypatch, capsys):
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    assert main(["explain", "D1", "--timeout", "0.5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("riskctl explain: error:") and err.count("\n") == 1


class _Msg:
    def __init__(self, partition: int, offset: int, key: bytes, value: bytes | None) -> None:
        self._p, self._o, self._k, self._v = partition, offset, key, value

    def error(self):
        return None

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def key(self) -> bytes:
        return self._k

    def value(self) -> bytes | None:
        return self._v


class _FakeConsumer:
    """Just enough of confluent_kafka.Consumer for the partition scan."""

    def __init__(self, logs: dict[int, list[tuple[bytes, bytes | None]]]) -> None:
        self.logs = logs
        self.queue: list[_Msg] = []

    def get_watermark_offsets(self, tp, timeout=None):
        return 0, len(self.logs.get(tp.partition, []))

    def assign(self, tps):
        self.queue = [_Msg(tp.partition, o, k, v) for tp in tps for o, (k, v) in enumerate(self.logs[tp.partition])]

    def consume(self, num_messages=1, timeout=None):
        out, self.queue = self.queue[:num_messages], self.queue[num_messages:]
        return out


def test_partition_scan_reads_to_the_end_and_keeps_only_the_key():
    from confluent_kafka import TopicPartition

    from audit.explain import _read_partitions

    ins = json.dumps(instruction("declaration", "release")).encode()
    consumer = _FakeConsumer({0: [(b"D2", b"{}"), (b"D1", ins), (b"D1", b"not json"), (b"D1", None)], 1: []})
    found = _read_partitions(consumer, TopicPartition, "t", [0, 1], b"D1", timeout_s=5)
    assert [f["instruction_id"] for f in found] == ["D1:1:declaration"]
