"""The stream's counters and gauges, exported with ``prometheus_client`` on ``GET /metrics``.

:class:`Metrics` is plain state the streamer updates as it goes (tests and the summary line read
it); a collector turns it into Prometheus families when ``/metrics`` is scraped, so nothing is
kept twice. ``prometheus_client`` (the ``serve`` extra, like ``tlsdetect serve``'s metrics) is
imported only when the metrics are rendered or served.

Every source (a followed file, standard input, the gRPC access-log service, OTLP, a live capture) is counted
under the same names (:class:`~tlsdetect.stream.source.Source`): ``records_in`` (lines or records read),
``rows`` (connections out), ``skipped`` (records not made rows, by reason), ``lag_bytes``/``lag_seconds``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Metrics", "MetricsUnavailableError", "registry", "serve_metrics"]


class MetricsUnavailableError(RuntimeError):
    """``prometheus_client`` is not installed (``pip install 'tlsdetect[serve]'``)."""


@dataclass
class Metrics:
    """What the stream counted: lines, rows, alerts, dead letters, ledger events, batches, lag, and each sink's
    state."""

    lines_read: int = 0
    #: lines or records read from the source, whatever it is (equal to ``lines_read``, named for every source)
    records_in: int = 0
    rows: int = 0
    alerts: int = 0
    dead_letters: int = 0
    batches: int = 0
    lag_bytes: int = 0
    lag_seconds: float = 0.0
    sink_sent: dict[str, int] = field(default_factory=dict)
    sink_rejected: dict[str, int] = field(default_factory=dict)
    sink_up: dict[str, int] = field(default_factory=dict)
    spool_bytes: dict[str, int] = field(default_factory=dict)
    sink_dropped: dict[str, int] = field(default_factory=dict)
    sink_held: dict[str, int] = field(default_factory=dict)
    sink_deduped: dict[str, int] = field(default_factory=dict)
    #: the anomaly ledger's events by name (:mod:`tlsdetect.sinks.weird`): dead letters by reason, connections
    #: by their ``incomplete`` reason code
    weird: dict[str, int] = field(default_factory=dict)
    #: records that did not become rows, by reason (a dead letter's reason up to its first colon)
    skipped: dict[str, int] = field(default_factory=dict)
    #: a live capture's counts by name (:mod:`tlsdetect.stream.live_capture`): ring files read, dropped, missing
    capture: dict[str, int] = field(default_factory=dict)

    def prometheus(self) -> str:
        """The Prometheus text format, as ``/metrics`` serves it."""
        return str(_prometheus().generate_latest(registry(self)).decode())


def _prometheus() -> Any:
    try:
        import prometheus_client
    except ImportError:
        raise MetricsUnavailableError(
            "the stream's /metrics needs prometheus-client: pip install 'tlsdetect[serve]'"
        ) from None
    return prometheus_client


class _Collector:
    """Reads :class:`Metrics` at each scrape (a custom collector: the values live in the dataclass)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        m = self.metrics
        yield CounterMetricFamily("tlsdetect_stream_lines_read_total", "Log lines read.", value=m.lines_read)
        yield CounterMetricFamily("tlsdetect_stream_records_in_total", "Lines or records read, for every source.",
                                  value=m.records_in)  # fmt: skip
        yield CounterMetricFamily("tlsdetect_stream_rows_total", "Connections parsed and scored.", value=m.rows)
        skipped = CounterMetricFamily("tlsdetect_stream_skipped_total", "Records that did not become rows, by reason.",
                                      labels=["reason"])  # fmt: skip
        for reason, n in sorted(m.skipped.items()):
            skipped.add_metric([reason], n)
        yield skipped
        yield CounterMetricFamily("tlsdetect_stream_alerts_total", "Alerts produced (verdict not ok).",
                                  value=m.alerts)  # fmt: skip
        yield CounterMetricFamily("tlsdetect_stream_dead_letters_total", "Lines that could not be parsed.",
                                  value=m.dead_letters)  # fmt: skip
        yield CounterMetricFamily("tlsdetect_stream_batches_total", "Micro-batches committed.", value=m.batches)
        yield GaugeMetricFamily("tlsdetect_stream_lag_bytes", "Bytes of the log not yet read.", value=m.lag_bytes)
        yield GaugeMetricFamily("tlsdetect_stream_lag_seconds", "Now minus START_TIME of the newest line processed.",
                                value=round(m.lag_seconds, 3))  # fmt: skip

        weird = CounterMetricFamily("tlsdetect_stream_weird_total", "Anomaly ledger events (like Zeek's weird.log): "
                                    "dead letters by reason, connections by their incomplete reason.",
                                    labels=["name"])  # fmt: skip
        for name, n in sorted(m.weird.items()):
            weird.add_metric([name], n)
        yield weird
        capture = CounterMetricFamily("tlsdetect_stream_capture_total", "Live capture: ring files read, dropped "
                                      "(scoring fell behind) and missing, bytes dropped, packets.", labels=["name"])
        for name, n in sorted(m.capture.items()):
            capture.add_metric([name], n)
        yield capture

        def by_sink(family: Any, values: Mapping[str, int]) -> Any:
            for sink, v in values.items():
                family.add_metric([sink], v)
            return family

        yield by_sink(CounterMetricFamily("tlsdetect_stream_alerts_sent_total", "Alerts a sink acknowledged.",
                                          labels=["sink"]), m.sink_sent)  # fmt: skip
        yield by_sink(CounterMetricFamily(
            "tlsdetect_stream_alerts_rejected_total",
            "Alerts a sink refused for good (HEC 4xx other than 408/429), written to the dead letters.",
            labels=["sink"]), m.sink_rejected)  # fmt: skip
        yield by_sink(GaugeMetricFamily("tlsdetect_stream_sink_up", "1 when the sink took the last batch.",
                                        labels=["sink"]), m.sink_up)  # fmt: skip
        yield by_sink(GaugeMetricFamily("tlsdetect_stream_spool_bytes", "Bytes waiting in a sink's spool.",
                                        labels=["sink"]), m.spool_bytes)  # fmt: skip
        yield by_sink(CounterMetricFamily(
            "tlsdetect_stream_alerts_dropped_total",
            "Alerts dropped for a sink that could not take them and whose buffer was full (when_full=drop).",
            labels=["sink"]), m.sink_dropped)  # fmt: skip
        yield by_sink(GaugeMetricFamily("tlsdetect_stream_sink_held_alerts",
                                        "Alerts held in memory for a sink that has not taken them yet.",
                                        labels=["sink"]), m.sink_held)  # fmt: skip
        yield by_sink(CounterMetricFamily(
            "tlsdetect_stream_alerts_deduped_total",
            "Alerts of a replay not sent again: the sink had taken them (ids kept with the checkpoint).",
            labels=["sink"]), m.sink_deduped)  # fmt: skip


def registry(metrics: Metrics) -> Any:
    """A ``CollectorRegistry`` of this stream only (not the process-wide default one)."""
    prometheus_client = _prometheus()
    reg = prometheus_client.CollectorRegistry(auto_describe=False)
    reg.register(_Collector(metrics))
    return reg


def serve_metrics(metrics: Metrics, port: int, host: str = "127.0.0.1") -> Any:
    """``GET /metrics`` (Prometheus text format) on a background thread; the server (``.shutdown()`` stops it).

    Raises :class:`MetricsUnavailableError` without ``prometheus_client``, ``OSError`` when the port is taken.
    """
    server, _thread = _prometheus().start_http_server(port, host, registry=registry(metrics))
    return server
