"""The console's Prometheus metrics (served on ``console_metrics_port``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter("customs_console_requests_total", "HTTP requests by route template and status.", ["route", "status"])
REQUEST_SECONDS = Histogram("customs_console_request_seconds", "HTTP request duration by route template.", ["route"],
                            buckets=(0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0))
SSE_CLIENTS = Gauge("customs_console_sse_clients", "Browsers connected to the live queue.")
RESULTS_RECORDED = Counter("customs_console_results_recorded_total", "Inspection results recorded by officers.")
RESULTS_DUPLICATE = Counter("customs_console_results_duplicate_total",
                            "Result submissions refused because the instruction already has a result (double submit, retry).")
PUBLISH_FAILURES = Counter("customs_console_publish_failures_total", "Records the broker did not acknowledge.")
ACTIONS = Counter("customs_console_actions_total", "Console actions recorded, by action.", ["action"])
QUEUE_OPEN = Gauge("customs_console_queue_open", "Open instructions held, by port.", ["port"])
QUEUE_OVERFLOW = Counter("customs_console_queue_overflow_total", "Open instructions not held because a port's queue was full.", ["port"])
RISK_ENTRIES = Gauge("customs_console_risk_entries", "Current risk-list entries the console holds (the analyst's page).")
RISK_ENTRIES_NOT_HELD = Gauge("customs_console_risk_entries_not_held",
                              "Risk-list records read since the console started but not held: CONSOLE_RISK_ENTRIES_MAX was reached.")
CREDIT_ENTERPRISES = Gauge("customs_console_credit_enterprises", "Enterprises whose credit record the console can show.")
CREDIT_ENTERPRISES_NOT_HELD = Gauge("customs_console_credit_enterprises_not_held", (
    "Enterprise-credit records read since the console started for enterprises it keeps no position of: "
    "CONSOLE_CREDIT_ENTERPRISES_MAX was reached."))
FEED_LAG_SECONDS = Histogram("customs_console_feed_delay_seconds",
                             "Instruction decided -> in the console's queue (the broker and the feed).",
                             buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 30.0))
FEED_UP = Gauge("customs_console_feed_up", "1 while the instruction feed reads the topics, 0 when it has stopped.")
LOGINS_THROTTLED = Counter("customs_console_logins_throttled_total",
                           "Logins refused unchecked after too many failures from the address (console.throttle).")
AUDIT_MISSING = Counter("customs_console_audit_records_missing_total",
                        "Console actions not acknowledged after their tries, although their business record was "
                        "(the work stands without its audit record; the console's log holds the action), by action.",
                        ["action"])
FIGURES_NOT_READY = Counter("customs_console_figures_not_ready_total",
                            "Figures pages (and their polls) answered without figures: computing, failed, or refused "
                            "because too many windows are waiting.", ["state"])
