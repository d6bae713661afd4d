"""Every Prometheus metric the daemon exports, in one registry per daemon instance.

A registry per instance (not the global one) lets tests run several daemons in one process and
keeps /metrics free of anything we did not define, apart from the process collector.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from tcsms_poller import __version__
from tcsms_poller.logs import lost_lines

__all__ = ["Metrics", "TrackingMetrics"]

_PREFIX = "tcsms_poller"


class Metrics:
    """The daemon's metrics; components receive this object and update what concerns them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.registry.register(_LostLogLines())
        r = self.registry
        self.requests = Counter(
            f"{_PREFIX}_tencent_requests",
            "Tencent API requests by action and result: ok, an error code, or a transport error",
            ["action", "code"],
            registry=r,
        )
        self.request_seconds = Histogram(
            f"{_PREFIX}_tencent_request_duration_seconds",
            "Time from sending a Tencent request to its parsed answer",
            ["action"],
            registry=r,
        )
        self.limiter_wait_seconds = Counter(
            f"{_PREFIX}_limiter_wait_seconds",
            "Seconds callers spent waiting for the per-action rate limiter",
            ["action"],
            registry=r,
        )
        self.retries = Counter(
            f"{_PREFIX}_tencent_retries",
            "Tencent requests retried after a transient error",
            ["action"],
            registry=r,
        )
        self.queue_answers_lost = Counter(
            f"{_PREFIX}_queue_answers_lost",
            "Queue-action answers that failed after the request was sent: their records are gone",
            ["action", "app_id"],
            registry=r,
        )
        self.records = Counter(
            f"{_PREFIX}_records",
            "Records seen by kind, source and outcome (new or duplicate)",
            ["kind", "source", "outcome"],
            registry=r,
        )
        self.rejected_items = Counter(
            f"{_PREFIX}_rejected_items",
            "API items that could not be parsed into a record and were quarantined",
            ["source"],
            registry=r,
        )
        self.receipts_pending = Counter(
            f"{_PREFIX}_receipts_pending",
            "Receipt items without a final status yet (no ReportStatus), each time one is pulled "
            "or pushed: not delivered, not marked seen; a later pull or push brings the final one",
            ["source"],
            registry=r,
        )
        self.outbox_depth = Gauge(
            f"{_PREFIX}_outbox_depth",
            "Records committed but not yet acknowledged by the sink",
            ["sink"],
            registry=r,
        )
        self.sink_delivered = Counter(
            f"{_PREFIX}_sink_delivered_records",
            "Records acknowledged by the sink",
            ["sink"],
            registry=r,
        )
        self.sink_failures = Counter(
            f"{_PREFIX}_sink_failures",
            "Failed sink deliveries (each is retried or dead-lettered)",
            ["sink"],
            registry=r,
        )
        self.dead_lettered = Counter(
            f"{_PREFIX}_dead_lettered_records",
            "Records written to the dead-letter file instead of the sink",
            ["sink"],
            registry=r,
        )
        self.last_success = Gauge(
            f"{_PREFIX}_last_successful_poll_timestamp_seconds",
            "UNIX time of each worker's last successful poll",
            ["worker"],
            registry=r,
        )
        self.worker_healthy = Gauge(
            f"{_PREFIX}_worker_healthy",
            "1 when the worker is healthy, 0 when a permanent error stopped it",
            ["worker"],
            registry=r,
        )
        self.cluster_lease_held = Gauge(
            f"{_PREFIX}_cluster_lease_held",
            "Cluster mode: 1 while this instance holds the lease (a sink, a queue or statistics "
            "pull of an app)",
            ["instance", "lease"],
            registry=r,
        )
        self.cluster_rate_share = Gauge(
            f"{_PREFIX}_cluster_rate_share",
            "Cluster mode: requests per second of the action this instance may send now (its "
            "share of the account's limit, granted by the database)",
            ["instance", "action"],
            registry=r,
        )
        self.cluster_number_claims = Gauge(
            f"{_PREFIX}_cluster_number_claims",
            "Cluster mode: phone numbers this instance holds a claim on (polls in progress)",
            ["instance"],
            registry=r,
        )
        self.worker_not_activated = Gauge(
            f"{_PREFIX}_worker_not_activated",
            "1 while Tencent has not activated the worker's API for its app (the worker idles)",
            ["worker"],
            registry=r,
        )
        self.tracked_numbers = Gauge(
            f"{_PREFIX}_tracked_numbers",
            "Phone numbers tracked for per-number polling",
            ["app_id"],
            registry=r,
        )
        self.by_number_lag = Gauge(
            f"{_PREFIX}_by_number_lag_seconds",
            "How far past its due time the most overdue tracked number is",
            ["app_id"],
            registry=r,
        )
        self.by_number_overfull = Counter(
            f"{_PREFIX}_by_number_overfull_windows_total",
            "One-second per-number windows that answered a full page (more may be unreachable)",
            ["app_id", "action"],
            registry=r,
        )
        self.callback_statistics = Gauge(
            f"{_PREFIX}_callback_statistics",
            "Tencent's receipt statistics over the statistics lookback, per app and counter",
            ["app_id", "counter"],
            registry=r,
        )
        self.http_requests = Counter(
            f"{_PREFIX}_http_requests",
            "Listener requests by route template (never the raw path) and answered status",
            ["route", "status"],
            registry=r,
        )
        self.build_info = Gauge(
            f"{_PREFIX}_build_info",
            "Always 1; the running version as a label",
            ["version"],
            registry=r,
        )
        self.build_info.labels(__version__).set(1)
        self.reload_successful = Gauge(
            f"{_PREFIX}_config_last_reload_successful",
            "1 unless the last reload (SIGHUP) failed and changed nothing",
            registry=r,
        )
        self.reload_successful.set(1)
        self.conversions = Counter(
            f"{_PREFIX}_conversions_reported",
            "Conversions reported to Tencent by result code",
            ["code"],
            registry=r,
        )
        self.tracking = TrackingMetrics(r)


# sent_at -> receipt, and -> its commit: most within a minute, a few hours late.
_LATENCY_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 24 * 3600)


class TrackingMetrics:
    """Tracked messages (``POST /v1/messages``): pending, resolved, latency, cost."""

    def __init__(self, r: CollectorRegistry) -> None:
        self.pending = Gauge(
            f"{_PREFIX}_messages_pending",
            "Tracked messages without a receipt yet",
            ["app_id"],
            registry=r,
        )
        self.resolved = Counter(
            f"{_PREFIX}_messages_resolved",
            "Tracked messages resolved, by outcome: delivered, failed, missing",
            ["outcome"],
            registry=r,
        )
        self.latency = Histogram(
            f"{_PREFIX}_receipt_latency_seconds",
            "Seconds from a tracked message's sent_at to its receipt (stage=receipt: "
            "UserReceiveTime) and to the receipt's commit (stage=committed)",
            ["stage"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.requests = Counter(
            f"{_PREFIX}_tracking_requests",
            "Per-number requests made for tracked messages (divide by messages_resolved_total)",
            ["app_id"],
            registry=r,
        )
        self.lag = Gauge(
            f"{_PREFIX}_tracking_lag_seconds",
            "How far past its due time the most overdue number with pending messages is",
            ["app_id"],
            registry=r,
        )


class _LostLogLines(Collector):
    """Log lines whose write failed (``logs.py``), read at scrape time: the count is the
    process's, kept where the lines are written."""

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(
            f"{_PREFIX}_log_lines_lost",
            "Log lines whose write to the log stream failed (closed, broken or full)",
            value=lost_lines(),
        )
