"""Metrics through Ray's metrics API, so they show on the Ray dashboard and in Prometheus.

Every metric raydesk exports is declared once in :data:`METRICS` (name, kind, description,
tag keys, buckets); components ask :class:`Metrics` for them by name. Objects are created
lazily inside the process that uses them, never at import time. Ray exports them with a
``ray_`` prefix. Tag values are
bounded: symbol, reason, model, component — never order ids. Counters are declared without
the ``_total`` suffix: the exporter appends it (``raydesk_events`` → ``ray_raydesk_events_total``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

LATENCY_MS_BUCKETS = [0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 25, 50, 100, 250, 1000]
APPLY_US_BUCKETS = [10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 50_000]


@dataclass(frozen=True)
class MetricSpec:
    kind: str  # counter | gauge | histogram
    description: str
    tag_keys: tuple[str, ...] = ()
    boundaries: tuple[float, ...] = ()


METRICS: dict[str, MetricSpec] = {
    "raydesk_events": MetricSpec(
        "counter", "Market-data rows applied to books.", ("symbol",)
    ),
    "raydesk_batches": MetricSpec("counter", "Market-data batches applied.", ("symbol",)),
    "raydesk_bad_input": MetricSpec(
        "counter", "Rejected input (malformed batch, bad command).", ("component", "field")
    ),
    "raydesk_quarantines": MetricSpec(
        "counter",
        "Symbols quarantined for a book-integrity breach (reason: crossed, sequence, l3, gap).",
        ("symbol", "reason"),
    ),
    "raydesk_resyncs": MetricSpec(
        "counter", "Books rebuilt from a snapshot (initial sync or resync).", ("symbol",)
    ),
    "raydesk_symbol_lag_ms": MetricSpec(
        "gauge",
        "Age of a symbol's latest batch when its actor starts applying it: wall time since "
        "the batch entered raydesk (live feed: since its last row was received), ms.",
        ("symbol",),
    ),
    "raydesk_book_quarantined": MetricSpec(
        "gauge", "1 while the symbol's book is quarantined (features invalid, new risk "
        "blocked until a snapshot resyncs it), else 0.", ("symbol",)
    ),
    "raydesk_feature_latency_ms": MetricSpec(
        "histogram", "Batch entry (live feed: receive time of its last row) to its decision "
        "point's features being ready, ms.", ("symbol",), tuple(LATENCY_MS_BUCKETS),
    ),
    "raydesk_book_apply_us": MetricSpec(
        "histogram", "Time to apply one batch and compute features, us.", ("symbol",),
        tuple(APPLY_US_BUCKETS),
    ),
    "raydesk_decisions": MetricSpec(
        "counter", "Decision points evaluated.", ("symbol", "signal")
    ),
    "raydesk_orders": MetricSpec("counter", "Orders submitted by the strategy.", ("symbol",)),
    "raydesk_fills": MetricSpec("counter", "Fills received.", ("symbol",)),
    "raydesk_cancels": MetricSpec(
        "counter", "Orders canceled (IOC remainders, requested and kill-switch cancels).",
        ("symbol",),
    ),
    "raydesk_risk_denials": MetricSpec(
        "counter", "Orders denied by the risk engine.", ("reason",)
    ),
    "raydesk_order_errors": MetricSpec(
        "counter", "Illegal transitions, duplicates and other order errors.", ("reason",)
    ),
    "raydesk_kill_switch_trips": MetricSpec(
        "counter", "Kill-switch trips.", ("reason",)
    ),
    "raydesk_risk_alerts": MetricSpec(
        "counter", "Risk alerts (code: REARM_REFUSED, CORRELATION_HIGH).", ("code",)
    ),
    "raydesk_exposure": MetricSpec(
        "gauge", "Worst-case portfolio exposure, quote currency (kind: gross, net).", ("kind",)
    ),
    "raydesk_pretrade_var": MetricSpec(
        "gauge", "Pre-trade VaR and ES of the worst-case exposures (measure: var, es).",
        ("measure",),
    ),
    "raydesk_portfolio_var": MetricSpec(
        "gauge",
        "Periodic report: VaR / ES of the held positions by method, confidence and horizon.",
        ("measure", "method", "alpha", "horizon_s"),
    ),
    "raydesk_portfolio_heat": MetricSpec(
        "gauge", "Undiversified loss at the report's largest confidence / equity.", ()
    ),
    "raydesk_drawdown": MetricSpec(
        "gauge", "Fall of equity from its high-water mark, quote currency.", ()
    ),
    "raydesk_tick_to_order_ms": MetricSpec(
        "histogram", "Triggering market event ts_init to order acceptance, ms.", ("symbol",),
        tuple(LATENCY_MS_BUCKETS),
    ),
    "raydesk_pipeline_inference_ms": MetricSpec(
        "histogram", "Round trip from the kernel to the Serve ensemble, ms.", (),
        tuple(LATENCY_MS_BUCKETS),
    ),
    "raydesk_inference_fallbacks": MetricSpec(
        "counter", "Predictions replaced by the fallback (deadline or error).", ("reason",)
    ),
    "raydesk_pnl": MetricSpec("gauge", "Total PnL (realised - fees + unrealised).", ()),
    "raydesk_position_lots": MetricSpec("gauge", "Position per symbol, lots.", ("symbol",)),
    "raydesk_journal_records": MetricSpec("counter", "Records journaled.", ()),
    "raydesk_journal_append_ms": MetricSpec(
        "histogram", "Time to append (and fsync) one step's records to the journal, ms.", (),
        tuple(LATENCY_MS_BUCKETS),
    ),
    "raydesk_audit_lag_records": MetricSpec(
        "gauge", "Journal records not yet confirmed in Postgres (journal.postgres).", ()
    ),
    "raydesk_audit_sink_failures": MetricSpec(
        "counter", "Postgres sink stopped by a defect (not an outage: those are retried).", ()
    ),
    "raydesk_redis_degraded_steps": MetricSpec(
        "counter", "Steps not published to Redis (down, slow or refusing).", ()
    ),
    "raydesk_feed_messages": MetricSpec(
        "counter", "Live feed messages received.", ("symbol",)
    ),
    "raydesk_feed_faults": MetricSpec(
        "counter",
        "Live feed faults (reason: gap, stale, malformed, unknown_stream, bad_field, crossed, "
        "snapshot).",
        ("reason",),
    ),
    "raydesk_feed_resyncs": MetricSpec(
        "counter", "Live feed resyncs from a REST snapshot.", ("symbol", "reason")
    ),
    "raydesk_feed_reconnects": MetricSpec(
        "counter", "Live feed reconnects (reason: closed, stall, error).", ("reason",)
    ),
    "raydesk_feed_dropped": MetricSpec(
        "counter", "Live feed rows dropped by backpressure.", ("symbol",)
    ),
}


class Metrics:
    """Lazily creates and caches Ray metric objects declared in :data:`METRICS`.

    Args:
        enabled: When False every call is a no-op (engines tested without Ray).
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._objs: dict[str, Any] = {}

    def _get(self, name: str) -> Any:
        obj = self._objs.get(name)
        if obj is None:
            from ray.util import metrics as rm

            spec = METRICS[name]
            if spec.kind == "counter":
                obj = rm.Counter(name, description=spec.description, tag_keys=spec.tag_keys)
            elif spec.kind == "gauge":
                obj = rm.Gauge(name, description=spec.description, tag_keys=spec.tag_keys)
            else:
                obj = rm.Histogram(
                    name,
                    description=spec.description,
                    boundaries=list(spec.boundaries),
                    tag_keys=spec.tag_keys,
                )
            self._objs[name] = obj
        return obj

    def inc(self, name: str, value: float = 1.0, **tags: str) -> None:
        """Increment a counter."""
        if self.enabled and value:
            self._get(name).inc(value, tags=tags or None)

    def set(self, name: str, value: float, **tags: str) -> None:
        """Set a gauge."""
        if self.enabled:
            self._get(name).set(value, tags=tags or None)

    def observe(self, name: str, value: float, **tags: str) -> None:
        """Observe a histogram value."""
        if self.enabled:
            self._get(name).observe(value, tags=tags or None)
