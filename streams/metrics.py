"""Prometheus metrics of a worker. Names are part of the operations contract (dashboards, alerts)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from prometheus_client import Counter, Gauge, Histogram

# Decision latency spans milliseconds (normal) to seconds (backlog, scan waits).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
SCORE_BUCKETS = tuple(round(i / 20, 2) for i in range(1, 21))

EVENTS_IN = Counter("customs_events_in_total", "Records consumed, by event type and port.", ["type", "port"])
INSTRUCTIONS = Counter(
    "customs_instructions_total", "Control instructions sent.", ["action", "stage", "port", "credit_class"]
)
# severity: low | medium | high; rule: a rule name fixed by the code (policy.valueadded.RULES, ...).
WARNINGS = Counter("customs_early_warnings_total", "Early warnings raised (redeliveries not counted), by severity and rule.",
                   ["severity", "rule"])
DEAD_LETTERS = Counter("customs_dead_letters_total", "Records sent to the dead-letter topic, by reason.", ["topic", "reason"])
DUPLICATES = Counter("customs_redelivered_total", "Redelivered or duplicate input, by type and outcome.", ["type", "outcome"])
DECISION_LATENCY = Histogram(
    "customs_decision_latency_seconds", "Event time to instruction, by stage.", ["stage"], buckets=LATENCY_BUCKETS
)
SCORES = Histogram("customs_risk_score", "Model risk scores, by supervision scenario.", ["scenario"], buckets=SCORE_BUCKETS)
PENDING_MACHINE_CHECKS = Gauge("customs_pending_machine_checks", "Machine-checks awaiting a scan result (this worker).")
SCAN_TIMEOUTS = Counter("customs_scan_timeouts_total", "Machine-checks inspected because no scan arrived in time.", ["port"])
BATCH_SIZE = Histogram(
    "customs_batch_declarations", "Declarations per micro-batch.", buckets=(1, 4, 16, 64, 256, 1024, 4096)
)
ACTIVE_MODEL = Gauge("customs_active_model_info", "Active model version per scenario (value 1).", ["scenario", "version"])
SHADOW_MODEL = Gauge("customs_shadow_model_info", "Shadow (challenger) model version per scenario (value 1).", ["scenario", "version"])
# A shadow model is scored beside the active one and never acted on (decision.shadow). version: the
# challenger's model version; the actions are the Action values. Disagreement rate = disagreements / scores.
SHADOW_SCORES = Counter(
    "customs_shadow_scores_total", "Declarations scored by a shadow (challenger) model, by scenario and challenger version.",
    ["scenario", "version"],
)
SHADOW_DISAGREEMENTS = Counter(
    "customs_shadow_disagreements_total",
    "Shadow-scored declarations whose action the challenger's score would have changed at the thresholds used, by scenario, "
    "challenger version and both actions.",
    ["scenario", "version", "champion_action", "challenger_action"],
)
ACTIVE_POLICY = Gauge("customs_active_policy_info", "Active policy version (value 1).", ["version"])
# outcome: "split" (one declaration per goods item emitted) or "refused" (policy: dead-lettered with the reason).
CENTRALISED = Counter("customs_centralised_declarations_total", "Centralised declarations handled, by outcome.", ["outcome"])
CENTRALISED_ITEMS = Counter("customs_centralised_items_total", "Declarations split off centralised declarations (one per goods item).")
CREDIT_TABLE_WRITES = Counter("customs_credit_table_writes_total",
                              "Enterprise-credit table records written by the credit fold (one per enterprise per micro-batch).")
CREDIT_BATCH_EVENTS = Histogram("customs_credit_batch_events", "Credit events per credit-event batch record read.",
                                buckets=(1, 10, 100, 500, 1000, 2000, 5000))
CREDIT_EVENTS_APPLIED = Counter("customs_credit_events_applied_total", "Credit events folded into the credit table.", ["event_type"])
WORKER_READY = Gauge("customs_worker_ready", "1 once the worker has partitions assigned and its tables recovered.")
ASSIGNED_PARTITIONS = Gauge("customs_assigned_partitions", "Declaration partitions actively owned by this worker.")

# --- Office health. Dashboards and alerts in deploy/ use these names. -----------
# kind: "full" (every partition named; the first of a session, or no session) or "incremental".
FETCHES = Counter("customs_consumer_fetches_total",
                  "Fetches the worker's consumer had answered through fetch sessions, full or incremental.", ["kind"])
FETCH_HOLDS = Counter("customs_consumer_fetch_holds_total",
                      "Partition fetches left out because the topic's agent already had enough records waiting "
                      "(CREDIT_BATCHES_BUFFERED: a bulk reload read as it is folded).", ["topic"])
CONSUMER_LAG = Gauge(
    "customs_consumer_lag",
    "Records between this worker's position and the high watermark, per input topic and partition it owns "
    "(remove a partition's sample when it is revoked).",
    ["topic", "partition"],
)
# lane: the declaration-time selection lane, "machine-check" or "inspect" (the Action values, as in
# customs_instructions_total{action}); release is the green lane. Targets: the policy's `capacity`.
SELECTION_RATE = Gauge(
    "customs_selection_rate",
    "Realised share of declarations selected at declaration time over the worker's recent window, by port and lane.",
    ["port", "lane"],
)
SELECTION_RATE_TARGET = Gauge(
    "customs_selection_rate_target",
    "Target share of declarations selected at declaration time, by port and lane (from the policy).",
    ["port", "lane"],
)
# found: "true" or "false". Hit rate = found="true" / all, computed in PromQL.
INSPECTION_RESULTS = Counter(
    "customs_inspection_results_total",
    "Inspection results received from the stations, by port and whether anything was found.",
    ["port", "found"],
)
BATCH_SECONDS = Histogram(
    "customs_batch_seconds",
    "Time per micro-batch, by agent and phase (decide: CPU work; deliver: waiting for the previous batch's acknowledgement "
    "and handing this one to the producer).",
    ["agent", "phase"], buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
# The rest of process_cpu_seconds_total is what a micro-batch costs around its decisions: the Kafka
# clients, Faust's delivery, the producer and the event loop.
HANDLER_CPU = Counter(
    "customs_handler_cpu_seconds_total",
    "CPU time of the thread deciding micro-batches (the decide phase of customs_batch_seconds), by agent.", ["agent"],
)
RISK_LIST_ENTRIES = Gauge("customs_risk_list_entries", "Risk-list entries active in this worker's index.")


def observe_many(histogram: Histogram, values: Sequence[float] | np.ndarray) -> None:
    """``histogram.observe(v)`` for every value, with one bucket increment per *bucket* instead of
    per value: the per-declaration score and latency observations were a measurable share of the
    worker's CPU. Uses prometheus-client's bucket layout (non-cumulative internal counters, a value
    falls into the first bucket whose upper bound is >= it); ``test_metrics`` checks the result
    against ``observe`` so an upstream change cannot go unnoticed."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return
    # prometheus-client's own buckets, updated in bulk (see the docstring; a unit test checks it against observe()).
    upper = histogram._upper_bounds
    counts = np.bincount(np.searchsorted(upper, values, side="left"), minlength=len(upper))
    for i in np.flatnonzero(counts):
        histogram._buckets[i].inc(int(counts[i]))
    histogram._sum.inc(float(values.sum()))


# --- Stalls and handler errors (issue 15). An alert in deploy/prometheus/alerts.yml uses the gauge. ---
OLDEST_UNDECIDED = Gauge(
    "customs_oldest_undecided_seconds",
    "Age of the oldest micro-batch handed to a handler whose outputs the broker has not yet acknowledged (0: none).",
)
HANDLER_RETRIES = Counter(
    "customs_handler_retries_total", "Micro-batches whose handler raised and that were handled again record by record, by agent.",
    ["agent"],
)
# outcome: "dead-lettered" (the record failed alone: dead letter handler-error) or "worker-exit" (no record of the
# batch could be handled: the worker stops so that it is restarted).
HANDLER_ERRORS = Counter(
    "customs_handler_errors_total", "Records a handler raised on when handled alone, by agent and outcome.", ["agent", "outcome"],
)

# --- Declaration state lifecycle (decision.retention). what: "compacted" (full state -> fingerprint),
# "deleted" (fingerprint past its retention: tombstone), "orphan-scan" (a scan whose declaration never
# came: tombstone and dead letter).
STATE_EXPIRED = Counter("customs_state_expired_total", "Declaration states compacted or deleted by the expiry timer.", ["what"])
STATE_RETAINED = Gauge("customs_state_retained",
                       "Declaration states (full or fingerprint) this worker holds (RocksDB: its estimate of the keys).")
JOINT_FINDINGS = Counter("customs_joint_findings_total",
                         "Findings published for the other agencies (redeliveries included), by kind and whether the "
                         "declaration's enterprise was still known.", ["kind", "enterprise_known"])
WARNING_REVIEWS = Counter("customs_warning_reviews_total", "Analysts' verdicts on early warnings read by the workers, by verdict.",
                          ["verdict"])

# Zero-tariff goods (streams.zerotariff). outcome of a register record: applied | released | deleted
# | stale | unchanged, and identifier-conflict per identifier taken over from another import.
ZERO_TARIFF_REGISTER_EVENTS = Counter("customs_zero_tariff_register_events_total",
                                      "Zero-tariff register records folded, by outcome.", ["outcome"])
ZERO_TARIFF_REGISTERED = Gauge("customs_zero_tariff_registered_goods", "Identified goods on the zero-tariff register (unreleased).")
# outcome: applied | stale (older than the last applied) | unregistered (not on the register: ignored)
POSITIONS = Counter("customs_positions_total", "Position and geofence events of tracked goods, by outcome.", ["outcome"])
ZERO_TARIFF_PENDING_ABSENCES = Gauge("customs_zero_tariff_absences_pending",
                                     "Tracked goods off the island whose allowed time away is still running (this worker's index).")

DUTY_FREE_PURCHASES = Counter("customs_duty_free_purchases_total",
                              "Duty-free purchases handled, by outcome (folded, duplicate, late-year).", ["outcome"])
DUTY_FREE_LINKS = Counter("customs_duty_free_links_total",
                          "Shopper ties to payers, phones and delivery addresses indexed, by outcome (new, known, late-year).", ["outcome"])
DUTY_FREE_EXPIRED = Counter("customs_duty_free_expired_total", "Duty-free states deleted after their year, by table.", ["table"])
DUTY_FREE_FLAGGED = Gauge("customs_duty_free_flagged_shoppers", "Entries of the duty-free standing table (flagged shoppers).")
