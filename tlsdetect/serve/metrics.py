"""The API's Prometheus instruments, in a registry of one app (two apps in a process never share counts)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["Metrics"]


class Metrics:
    """The app's own Prometheus registry and instruments (``/metrics`` serves the registry)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("tlsdetect_api_requests", "HTTP requests by route, method and status",
                                ["route", "method", "status"], registry=r)
        self.latency = Histogram(
            "tlsdetect_api_request_duration_seconds", "Time to answer a request, by route", ["route"], registry=r,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
        )
        self.generation = Gauge("tlsdetect_api_baseline_generation",
                                "Generation of the loaded baseline (1 at start, +1 per reload)", registry=r)
        self.loaded_at = Gauge("tlsdetect_api_baseline_loaded_timestamp_seconds",
                               "When the serving baseline was loaded (Unix time)", registry=r)
        self.reloads = Counter("tlsdetect_api_baseline_reloads", "Baseline reload attempts by result",
                               ["result"], registry=r)
        self.rows_scored = Counter("tlsdetect_api_rows_scored", "Connections scored by POST /v1/score, by verdict",
                                   ["verdict"], registry=r)
        self.lookups = Counter("tlsdetect_api_lookups", "Fingerprint lookups by cache result", ["cache"], registry=r)
        self.body_rejected = Counter("tlsdetect_api_bodies_rejected",
                                     "Requests refused because the body exceeded the limit", registry=r)
        self.timeouts = Counter("tlsdetect_api_request_timeouts",
                                "Connections closed because a request's head or body did not arrive in time",
                                ["phase"], registry=r)
        self.heads_rejected = Counter("tlsdetect_api_heads_rejected",
                                      "Connections closed because a request's line and headers exceeded the limit",
                                      registry=r)
