"""``tlsdetect stream``: score an Envoy access log as it grows, alerts to sinks (see :mod:`tlsdetect.stream.loop`)."""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, cast

import click

from tlsdetect.cli.common import UserPath, baseline_option
from tlsdetect.cli.policy_options import load_policies, policy_options

log = logging.getLogger("tlsdetect.stream.loop")


def _mapping(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, col = pair.partition("=")
        if not sep or not key or not col:
            raise click.BadParameter(f"{pair!r}: expected JSON_KEY=COLUMN", param_hint="--mapping")
        out[key] = col
    return out


SOURCE_FORMS = ("envoy:PATH, envoy:- (standard input), the path of an existing log file, envoy-als://HOST:PORT "
                "(Envoy's gRPC access-log service), otlp://HOST:PORT or otlp+http://HOST:PORT (OpenTelemetry logs)")
STDIN_NOTE = ("reading standard input until it ends: no checkpoint is kept (a pipe cannot be read again), so a "
              "restart starts with whatever comes next; give a file path to resume where a run stopped")


def source_path(spec: str, is_file: Callable[[str], bool] = os.path.isfile) -> str | None:
    """The log path of ``--source`` (``-``: standard input), or None when ``spec`` is none of the accepted forms.

    ``envoy:PATH`` and ``envoy:-`` as documented; what log shippers' users try first is accepted too: a
    bare ``-`` and a bare path, when it names an existing file (else a typo would wait for it forever).
    """
    kind, sep, path = spec.partition(":")
    if sep and kind == "envoy":
        return path or None
    if spec == "-" or (spec and is_file(spec)):
        return spec
    return None


@click.command("stream")
@baseline_option(required=False, help_text="Baseline directory (else knowledge only).")
@click.option(
    "--source", required=True,
    metavar="envoy:PATH|envoy:-|envoy-als://HOST:PORT|otlp[+http]://HOST:PORT|pcap:IFACE|pcap:-",
    help="The Envoy access log to read (JSON lines or --text-format): envoy:PATH, a bare PATH of an existing "
    "file, or envoy:- (also -) for standard input, read until it ends, without a checkpoint; or a receiver Envoy "
    "pushes to: envoy-als://HOST:PORT (gRPC access-log service), otlp://HOST:PORT (OpenTelemetry logs over gRPC) "
    "or otlp+http://HOST:PORT (POST /v1/logs). Receivers keep no checkpoint and run until stopped. pcap:IFACE "
    "captures an interface with dumpcap (a ring buffer in STATE/capture); pcap:- reads a pcap stream on stdin.",
)  # fmt: skip
@click.option("--follow", is_flag=True, help="Keep following the log through rotation (else read to its end and exit).")
@click.option(
    "--sink", "sink_specs", multiple=True, required=True, metavar="SPEC",
    help="jsonl:PATH|-, syslog+tcp://HOST:PORT, syslog+tls://HOST:PORT[?ca=PEM][&cert=PEM&key=PEM][&name=HOST] "
    "(RFC 5425), syslog+udp://HOST:PORT, cef:PATH|-, cef+syslog+tcp|tls://..., "
    "hec+https://HOST:PORT[/path]?token=T[&verify=false][&ca=PEM]. Repeat for several.",
)  # fmt: skip
@click.option("--state", "state_dir", required=True, type=UserPath(file_okay=False, output=True),
              help="Directory for the checkpoint (SQLite) and the sinks' spools.")  # fmt: skip
@click.option("--dead-letter", type=UserPath(dir_okay=False, output=True),
              help="Unparseable lines go here (default: STATE/dead-letter.jsonl).")  # fmt: skip
@click.option("--text-format", help="The Envoy text format string, for a text access log.")
@click.option("--mapping", "mapping_pairs", multiple=True, metavar="KEY=COLUMN", help="Custom JSON key -> column.")
@click.option("--metrics-port", type=int, help="Serve Prometheus /metrics on 127.0.0.1:PORT.")
@click.option("--metrics-host", default="127.0.0.1", show_default=True, help="Address for --metrics-port.")
@click.option("--batch-lines", default=5000, show_default=True, help="Lines per micro-batch at most.")
@click.option("--batch-ms", default=200, show_default=True, help="A micro-batch is sent after this long at most.")
@click.option("--spool-max-mb", default=256, show_default=True, help="On-disk spool per network sink, bounded.")
@click.option("--workers", default=1, show_default=True, help="Parse+score processes (catch-up runs only).")
@click.option("--from-start", "recover", flag_value="start", default=None,
              help="Without a usable checkpoint (lost, empty, damaged, past the end of the log): read the log from "
              "its start (alerts still in the dedupe window are not sent twice).")  # fmt: skip
@click.option("--from-end", "recover", flag_value="end",
              help="Without a usable checkpoint, or on a first run: start at the end of the log (what it holds "
              "now is not scored).")  # fmt: skip
@click.option("--when-full", type=click.Choice(["block", "drop"]), default="block", show_default=True,
              help="A sink that cannot take alerts and holds --sink-buffer of them: wait for it (block) or drop "
              "and count what does not fit (drop). Per network sink: ?when_full=drop in its spec.")  # fmt: skip
@click.option("--sink-buffer", default=10_000, show_default=True, type=click.IntRange(min=0),
              help="Alerts held in memory per sink that is down (behind its disk spool), then --when-full.")
@click.option("--dedupe-window", default=1_000_000, show_default=True, type=click.IntRange(min=0),
              help="Alert ids kept per sink with the checkpoint: a replay does not send them again.")
@click.option("--capture-filter", metavar="BPF", help="pcap:IFACE: dumpcap's capture filter instead of the "
              "built-in one (hellos, SYN, QUIC long headers, DTLS handshakes; README, 'live interface').")
@click.option("--ring-mb", default=16, show_default=True, type=click.IntRange(min=1),
              help="pcap sources: a ring file (a batch) closes at this size ...")
@click.option("--ring-seconds", default=1, show_default=True, type=click.IntRange(min=1), help="... or this age.")
@click.option("--ring-queue-mb", default=1024, show_default=True, type=click.IntRange(min=1),
              help="pcap sources: finished ring files kept waiting on disk; past it the oldest are dropped, counted.")
@policy_options
def stream(
    baseline_dir: str | None, source: str, follow: bool, sink_specs: tuple[str, ...], state_dir: str,
    dead_letter: str | None, text_format: str | None, mapping_pairs: tuple[str, ...], metrics_port: int | None,
    metrics_host: str, batch_lines: int, batch_ms: int, spool_max_mb: int, workers: int, recover: str | None,
    when_full: str, sink_buffer: int, dedupe_window: int, pins: tuple[str, ...] = (),
    issuer_policy: tuple[str, ...] = (), capture_filter: str | None = None, ring_mb: int = 16,
    ring_seconds: int = 1, ring_queue_mb: int = 1024,
) -> None:  # fmt: skip
    """Follow an Envoy access log (or receive the records Envoy pushes), score every line, send alerts to sinks.

    Without --follow the log is read to its end, alerts delivered, the checkpoint committed, and the
    command exits (a catch-up run); with --follow it keeps reading, through rename and copytruncate
    rotation. A restart goes on from the checkpoint in --state, which moves only after every sink took
    the alerts (a sink that is down is retried with backoff and spooled on disk meanwhile; the other sinks
    go on). A lost or damaged checkpoint stops the stream with one line unless --from-start or --from-end
    says where to read. A receiver (envoy-als://, otlp://, otlp+http://) runs until SIGTERM or SIGINT, with
    no checkpoint: what was queued and not yet scored is lost on a restart (README, "Deployments").
    """
    from tlsdetect.detect.baseline import Baseline
    from tlsdetect.detect.baseline_dir import BaselineError
    from tlsdetect.sinks.alerts.open import open_sink, split_when_full
    from tlsdetect.stream.checkpoint import CheckpointStore, Recover, StateDirError, check_state_dir
    from tlsdetect.stream.fanout import WHEN_FULL, SinkLane, WhenFull
    from tlsdetect.stream.live_capture import LiveCapture, LiveCaptureError, parse_live
    from tlsdetect.stream.loop import Processor, StreamConfig, Streamer
    from tlsdetect.stream.metrics import Metrics, MetricsUnavailableError, serve_metrics
    from tlsdetect.stream.receivers import Receiver, ReceiverError, parse_receiver
    from tlsdetect.stream.rows_processor import RowsProcessor

    policies = load_policies(pins, issuer_policy)
    try:
        iface = parse_live(source)
        pushed = iface is not None or parse_receiver(source) is not None
    except (ReceiverError, LiveCaptureError) as exc:
        raise click.ClickException(f"--source {exc}") from None
    path = source if pushed else source_path(source)
    if path is None:
        raise click.ClickException(f"--source {source!r}: expected {SOURCE_FORMS}")
    stdin = path == "-"
    # the stream says what happens to its sinks and its file (down, spooling, rotated) even without -v
    verbose = logging.getLogger().level <= logging.INFO
    logging.getLogger("tlsdetect.stream.loop").setLevel(logging.INFO if verbose else logging.WARNING)
    if pushed:
        follow = True  # a receiver has no end: it runs until SIGTERM/SIGINT
    elif not stdin and not follow and not Path(path).is_file():
        raise click.ClickException(f"{path}: no such file (with --follow the stream waits for it)")
    state = Path(state_dir)
    try:
        baseline = Baseline.load(baseline_dir) if baseline_dir else None
    except (BaselineError, OSError, ValueError) as exc:
        raise click.ClickException(f"baseline: {exc}") from None
    learned = baseline.learned_mesh_warning() if baseline is not None else None
    if learned:
        click.echo(f"WARNING: {learned}", err=True)
    start = cast("Recover | None", recover)  # --from-start / --from-end
    specs = [split_when_full(spec) for spec in sink_specs]
    for spec, mode in specs:
        if mode is not None and mode not in WHEN_FULL:
            raise click.BadParameter(f"{spec}: when_full={mode!r}, expected one of {', '.join(WHEN_FULL)}",
                                     param_hint="--sink")  # fmt: skip
    try:
        check_state_dir(state)
        store = CheckpointStore(state, recover=start)
    except StateDirError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        sinks = [SinkLane(open_sink(spec, state, spool_max_bytes=spool_max_mb << 20), max_alerts=sink_buffer,
                          when_full=cast("WhenFull", mode or when_full)) for spec, mode in specs]  # fmt: skip
    except (ValueError, KeyError, OSError) as exc:
        store.close()
        raise click.ClickException(str(exc)) from None
    processor = (RowsProcessor if iface is not None else Processor)(baseline, _mapping(mapping_pairs), text_format,
                                                                    policies)  # fmt: skip
    config = StreamConfig(follow=follow, batch_lines=batch_lines, batch_ms=batch_ms, workers=workers,
                          recover=start, dedupe_window=dedupe_window)  # fmt: skip
    metrics = Metrics()
    try:
        server = serve_metrics(metrics, metrics_port, metrics_host) if metrics_port else None
    except (MetricsUnavailableError, OSError) as exc:
        for lane in sinks:
            lane.sink.close()
        store.close()
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise click.ClickException(f"--metrics-port {metrics_port} on {metrics_host}: {why}") from None
    if stdin:
        click.echo(STDIN_NOTE, err=True)
    src: BinaryIO | Path | Receiver | LiveCapture
    try:
        if iface is not None:
            src = LiveCapture(iface, state / "capture", metrics=metrics, max_bytes=ring_queue_mb << 20,
                              ring_bytes=ring_mb << 20, ring_seconds=ring_seconds, bpf=capture_filter,
                              stdin=sys.stdin.buffer if iface == "-" else None)  # fmt: skip
        else:
            src = Receiver(source) if pushed else sys.stdin.buffer if stdin else Path(path)
    except (ReceiverError, LiveCaptureError) as exc:
        for lane in sinks:
            lane.sink.close()
        store.close()
        if server is not None:
            server.shutdown()
        raise click.ClickException(f"--source {exc}") from None
    if isinstance(src, LiveCapture):
        click.echo(f"capturing {src.file} (no checkpoint: ring files not yet scored are lost on a restart)", err=True)
    if isinstance(src, Receiver):
        click.echo(f"receiving on {src.file} (no checkpoint: what is queued and not yet scored is lost on a "
                   "restart; the sender buffers while this is down)", err=True)  # fmt: skip
    try:
        streamer = Streamer(src, processor, sinks, store, config=config, metrics=metrics,
                            dead_letter=Path(dead_letter) if dead_letter else state / "dead-letter.jsonl")  # fmt: skip
    except StateDirError as exc:  # the checkpoint is past the end of the log: one line, with the way out
        for lane in sinks:
            lane.sink.close()
        store.close()
        if server is not None:
            server.shutdown()
        raise click.ClickException(str(exc)) from None
    signal.signal(signal.SIGTERM, streamer.stop)
    signal.signal(signal.SIGINT, streamer.stop)
    try:
        m = streamer.run()
    except StateDirError as exc:  # the log appeared later, shorter than its checkpoint
        raise click.ClickException(str(exc)) from None
    finally:
        streamer.close()
        if server is not None:
            server.shutdown()
    refused = sum(m.sink_rejected.values())
    click.echo(
        f"{m.lines_read} lines, {m.rows} connections, {m.alerts} alerts, {m.dead_letters} dead letters"
        + (f", {refused} alerts refused by a sink (in the dead letters)" if refused else "")
        + (f", {dropped} alerts dropped for a full sink (when_full=drop)" if (dropped := sum(m.sink_dropped.values()))
           else "")
        + (f"; weird: {sum(m.weird.values())} events ("
           + ", ".join(f"{k} {n}" for k, n in sorted(m.weird.items(), key=lambda kv: (-kv[1], kv[0]))[:3]) + ")"
           if m.weird else ""), err=True,
    )  # fmt: skip
