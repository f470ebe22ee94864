"""The ``tlsdetect`` command.

Errors a user can cause (a file that is not a capture, a missing tool) end in one line on
stderr and a non-zero exit; damage inside a capture is a warning that says where, after the
readable part has been used.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import click
import pandas as pd

import tlsdetect.sinks.files as sinks
from tlsdetect import __version__, schema
from tlsdetect.cli.common import UserPath, mesh_ca_option
from tlsdetect.detect.baseline import Baseline, BaselineError, MeshSpec
from tlsdetect.readers.inputs import InputError, Inputs
from tlsdetect.readers.logs import FORMATS, DeadLetter

#: Below this many bytes of input a progress bar is noise.
PROGRESS_MIN_BYTES = 64 * 1024 * 1024

EXIT_INPUT = 2


def _progress_bytes(files: list[Path], enabled: bool) -> Iterator[tuple[Path, object]]:
    """Yield (file, callback) pairs while a rich progress bar on stderr tracks bytes read."""
    total = sum(f.stat().st_size for f in files)
    if not enabled or total < PROGRESS_MIN_BYTES or not sys.stderr.isatty():
        for f in files:
            yield f, None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task("reading", total=total)
        done = 0
        for f in files:
            bar.update(task, description=f.name)
            base = done

            def update(n: int, base: int = base) -> None:
                bar.update(task, completed=base + n)

            yield f, update
            done += f.stat().st_size
            bar.update(task, completed=done)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tlsdetect")
@click.option("-v", "--verbose", is_flag=True, help="Log what the readers do.")
def main(verbose: bool) -> None:
    """Detect TLS interception from ClientHello fingerprints and certificate issuers."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.ERROR,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@main.command()
@click.argument("paths", nargs=-1, required=True, type=UserPath())
@click.option(
    "-f", "--format", "fmt", type=click.Choice(sinks.FORMATS), default="table", show_default=True,
    help="Output format.",
)
@click.option("-o", "--output", type=UserPath(dir_okay=False, writable=True, output=True),
              help="Write here instead of stdout.")
@click.option(
    "--engine", type=click.Choice(["native", "tshark"]), default="native", show_default=True,
    help="native: vectorised reader (TLS over TCP). tshark: Wireshark's dissection (adds QUIC and DTLS).",
)
@click.option("--columns", help="Comma-separated columns to output (default: all for files, a summary for the table).")
@click.option("--no-progress", is_flag=True, help="Never show a progress bar.")
@click.option(
    "--input-format", type=click.Choice(FORMATS), help="Skip detection: read every PATH as this format."
)
@click.option(
    "--dead-letter", type=UserPath(dir_okay=False, writable=True, output=True),
    help="Append log lines that cannot be read here (JSON lines: file, line, reason, text).",
)
def fingerprint(
    paths: tuple[str, ...],
    fmt: str,
    output: str | None,
    engine: str,
    columns: str | None,
    no_progress: bool,
    input_format: str | None,
    dead_letter: str | None,
) -> None:
    """Fingerprint every TLS handshake in PATHS: pcap/pcapng captures, Zeek ssl/x509/conn logs,
    Suricata EVE or Envoy access logs (files or directories; the format is detected from the
    content, related logs are given together).

    One row per connection: 4-tuple, SNI, version, ALPN, JA3, JA3N, JA3S, JA4 (with _r, _o,
    _ro) and, where the certificate is visible, the server's subject, issuer and SHA-256.
    """
    if fmt == "parquet" and not output:
        raise click.ClickException("parquet output needs a file: add -o FILE")
    wanted = _columns(columns, list(schema.COLUMNS))
    with contextlib.ExitStack() as stack:
        letters = stack.enter_context(_dead_letters(dead_letter))
        inputs = _inputs(paths, engine, input_format, letters, progress=not no_progress)
        sink = _open_sink(stack, fmt, output, wanted)
        with _user_errors():
            _write_behind(inputs.chunks(), sink.write)
        sink.close()
    _report(inputs, letters, dead_letter)
    click.echo(f"{sink.rows} connections from {len(inputs.files)} file(s)", err=True)


def _columns(text: str | None, valid: list[str]) -> list[str] | None:
    """``--columns`` as a list (None: the default); a name not in ``valid`` is one line that lists them all."""
    wanted = [c.strip() for c in text.split(",") if c.strip()] if text else []
    unknown = [c for c in wanted if c not in valid]
    if unknown:
        raise click.ClickException(f"unknown column(s): {', '.join(unknown)}; valid columns: {', '.join(valid)}")
    return wanted or None


def _write_behind(chunks: Iterator[pd.DataFrame], write: Callable[[pd.DataFrame], None]) -> None:
    """``write`` every chunk in order, each in a writer thread while the next one is computed.

    Encoding and writing a chunk (Arrow conversion, Parquet compression, text formatting) then
    overlaps with reading the input. One write is in flight at a time, so memory holds at most
    two chunks; an error from either side is raised here after the pending write has finished.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tlsdetect-sink") as pool:
        pending: Future[None] | None = None
        for chunk in chunks:
            if pending is not None:
                pending.result()
            pending = pool.submit(write, chunk)
        if pending is not None:
            pending.result()


def _inputs(paths: tuple[str, ...], engine: str, input_format: str | None, letters: DeadLetter, *,
            progress: bool) -> Inputs:
    return Inputs(paths, engine=engine, input_format=input_format, dead_letter=letters,
                  progress=lambda files: _progress_bytes(files, progress))


def _open_sink(stack: contextlib.ExitStack, fmt: str, output: str | None, columns: list[str] | None,
               table_columns: tuple[str, ...] | None = None) -> sinks.Sink:
    if fmt == "parquet":
        if not output:
            raise click.ClickException("parquet output needs a file: add -o FILE")
        return sinks.Sink(fmt, path=output, columns=columns)
    try:
        fh = stack.enter_context(open(output, "w", encoding="utf-8", newline="")) if output else sys.stdout  # noqa: SIM115
    except OSError as exc:
        raise click.ClickException(f"{output}: cannot write ({exc.strerror or exc})") from None
    if fmt == "table" and columns is None and table_columns is not None:
        columns = list(table_columns)
    return sinks.Sink(fmt, fh, columns=columns)


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """Input problems a user can fix end in one line and exit status 2, not a traceback."""
    try:
        yield
    except (InputError, BaselineError) as exc:
        raise click.ClickException(str(exc)) from None


def _dead_letters(path: str | None) -> DeadLetter:
    """The dead-letter file opened for appending; a path that cannot be opened is one line, not a traceback."""
    try:
        return DeadLetter(path)
    except OSError as exc:
        raise click.ClickException(f"{path}: cannot write dead letters ({exc.strerror or exc})") from None


def _report(inputs: Inputs, letters: DeadLetter, dead_letter: str | None) -> None:
    for w in inputs.warnings:
        click.echo(f"warning: {w}", err=True)
    if letters.stats.bad_lines:
        where = f"; see {dead_letter}" if dead_letter else " (add --dead-letter FILE to keep them)"
        click.echo(f"warning: {letters.stats.summary()}{where}", err=True)


# --- detection: baseline fit / show, score, lookup -------------------------------------------------------
_COMMON_INPUT = [
    click.option("--engine", type=click.Choice(["native", "tshark"]), default="native", show_default=True,
                 help="Capture engine (see 'fingerprint --help')."),
    click.option("--input-format", type=click.Choice(FORMATS), help="Skip detection: read every PATH as this format."),
    click.option("--dead-letter", type=UserPath(dir_okay=False, writable=True, output=True),
                 help="Append log lines that cannot be read here."),
    click.option("--no-progress", is_flag=True, help="Never show a progress bar."),
]


def _input_options(f: Any) -> Any:
    for opt in reversed(_COMMON_INPUT):
        f = opt(f)
    return f


def _time_filter(df: pd.DataFrame, since: str | None, until: str | None) -> pd.DataFrame:
    if not since and not until:
        return df
    ts = pd.to_datetime(df["ts"], utc=True)
    keep = pd.Series(True, index=df.index)

    def utc(text: str) -> pd.Timestamp:
        t = pd.Timestamp(text)
        return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")

    try:
        if since:
            keep &= ts >= utc(since)
        if until:
            keep &= ts < utc(until)
    except ValueError as exc:
        raise click.ClickException(f"--since/--until: {exc}") from None
    return df[keep.fillna(False).to_numpy(dtype=bool)]


@main.group()
def baseline() -> None:
    """Learn what clean traffic looks like (fit) and inspect a baseline (show)."""


@baseline.command("fit")
@click.argument("paths", nargs=-1, required=True, type=UserPath())
@click.option("-o", "--output", required=True, type=UserPath(file_okay=False, output=True),
              help="Baseline directory to write (written beside it, then renamed into place).")
@click.option("--force", is_flag=True, help="Replace the baseline already in OUTPUT.")
@click.option("--client-key", default="auto", show_default=True,
              help="What identifies a client: auto (mTLS subject, else IP), ip, mtls, ua, or a column name.")
@mesh_ca_option
@click.option("--since", help="Learn only from connections at or after this time (ISO 8601, UTC if no zone).")
@click.option("--until", help="Learn only from connections before this time.")
@click.option("--update", is_flag=True, help="Fold the input into the existing baseline in OUTPUT (partial_fit).")
@click.option("--no-model", is_flag=True, help="Do not fit the ClientHello population model.")
@_input_options
def baseline_fit(paths: tuple[str, ...], output: str, force: bool, client_key: str, mesh_ca: MeshSpec,
                 since: str | None, until: str | None, update: bool, no_model: bool, engine: str,
                 input_format: str | None, dead_letter: str | None, no_progress: bool) -> None:
    """Learn a baseline from traffic believed clean in PATHS (captures and logs, like 'fingerprint').

    No mesh CA unless one is given (--mesh-ca FILE.pem|DN) or learning is asked for (--mesh-ca learn).
    An existing baseline in OUTPUT is replaced only with --force (or folded into with --update).
    """
    from tlsdetect.detect.baseline import Baseline, check_save_target

    with _user_errors():
        check_save_target(Path(output), overwrite=force or update)  # before reading: fail in a second, not later
    with contextlib.ExitStack() as stack:
        letters = stack.enter_context(_dead_letters(dead_letter))
        inputs = _inputs(paths, engine, input_format, letters, progress=not no_progress)
        with _user_errors():
            df = _time_filter(inputs.read_all(), since, until)
            if update:
                model = Baseline.load(output)
            else:
                model = Baseline(client_key=client_key, mesh_ca=mesh_ca, model=not no_model)
            try:
                model.partial_fit(df) if update else model.fit(df)
            except ValueError as exc:
                raise click.ClickException(f"cannot fit: {exc}") from None
            try:
                model.save(output, overwrite=force or update)
            except OSError as exc:
                raise click.ClickException(f"{output}: cannot write the baseline ({exc.strerror or exc})") from None
    _report(inputs, letters, dead_letter)
    _print_summary(model, output)


def _print_summary(model: Baseline, where: str) -> None:
    summary = model.summary()
    fps = summary["distinct_fingerprints"]
    click.echo(f"baseline {where}: {summary['connections']} connections, {summary['clients']} clients, "
               f"{fps.get('ja4', 0)} distinct JA4, {fps.get('ja3n', 0)} distinct JA3N, {summary['issuers']} issuers, "
               f"{summary['distinct_hellos']} distinct ClientHellos")
    click.echo(f"  time range: {summary['first_seen']} .. {summary['last_seen']}")
    mesh = summary["mesh_cas"]
    if not mesh:
        click.echo("  mesh CA: none (issuer signals use the knowledge base only)")
    for m in mesh:
        how = "given" if m["origin"] == "given" else "LEARNED - confirm, or refit with --mesh-ca"
        click.echo(f"  mesh CA ({m['role']}): {m['issuer']}  key id {m['ski'] or '?'}  [{how}]")
    hello_model = summary.get("model")
    click.echo("  model: " + ("none" if not hello_model else
                              f"nearest-neighbour novelty over {hello_model['hellos']} distinct hellos "
                              f"({hello_model['values']} values), outlier beyond Jaccard distance "
                              f"{hello_model['threshold']}"))
    _warn_learned_mesh(model)


def _warn_learned_mesh(model: Baseline | None) -> None:
    """Say on stderr, loudly, that the mesh CA in use was learned from traffic rather than given."""
    warning = model.learned_mesh_warning() if model is not None else None
    if warning:
        click.echo(f"WARNING: {warning}", err=True)


@baseline.command("show")
@click.argument("directory", type=UserPath(file_okay=False))
@click.option("--clients", "n_clients", default=10, show_default=True, help="How many clients to list.")
def baseline_show(directory: str, n_clients: int) -> None:
    """Print what a baseline knows: counts, mesh CAs, the busiest clients and their fingerprints."""
    from tlsdetect.detect.baseline import Baseline

    with _user_errors():
        model = Baseline.load(directory)
    _print_summary(model, directory)
    stab = model.client_stability().set_index("client_id")
    clients = model.clients_.sort_values("connections", ascending=False).head(n_clients)
    fps = model.fingerprints_[model.fingerprints_["kind"] == "ja4"]
    for rec in clients.itertuples(index=False):
        st = stab["stability"].get(rec.client_id, float("nan"))
        click.echo(f"  client {rec.client_id}: {rec.connections} connections, stability {st:.0%}")
        mine = fps[fps["client_id"] == rec.client_id].sort_values("count", ascending=False).head(3)
        for f in mine.itertuples(index=False):
            click.echo(f"      {f.value}  x{f.count}")


SCORE_TABLE_COLUMNS = ("ts", "client_id", "server_ip", "server_port", "sni", "ja4", "score", "verdict", "reason_codes")
SCORE_OUTPUT_COLUMNS = (
    "ts", "source", "conn_id", "client_ip", "client_port", "server_ip", "server_port", "transport", "sni",
    "tls_version", "ja3", "ja3n", "ja4", "server_issuer", "peer_subject", "peer_issuer", "user_agent",
    "client_id", "issuer_class", "known_product", "score", "verdict", "reasons", "compared",
)


@main.command("score")
@click.argument("paths", nargs=-1, required=True, type=UserPath())
@click.option("--baseline", "baseline_dir", required=True, type=UserPath(file_okay=False), help="Baseline directory.")
@click.option("-f", "--format", "fmt", type=click.Choice((*sinks.FORMATS, *sinks.ALERT_FORMATS)), default="table",
              show_default=True,
              help="table, jsonl, csv, parquet: every connection (--only-flagged: the others). ecs, cef: the "
                   "stream's alerts, one per suspicious or intercepted connection (ok rows are not written), as "
                   "ECS JSON lines or CEF lines for the SIEM index the stream feeds.")
@click.option("-o", "--output", type=UserPath(dir_okay=False, writable=True, output=True),
              help="Write here instead of stdout.")
@click.option("--only-flagged", is_flag=True, help="Output only suspicious and intercepted connections.")
@click.option("--columns", help="Comma-separated columns to output (not with ecs/cef: their fields are fixed).")
@_input_options
def score_cmd(paths: tuple[str, ...], baseline_dir: str, fmt: str, output: str | None, only_flagged: bool,
              columns: str | None, engine: str, input_format: str | None, dead_letter: str | None,
              no_progress: bool) -> None:
    """Score every connection in PATHS against a baseline: score 0-100, verdict, reasons.

    A summary (verdict counts, top reasons, top flagged clients) goes to stderr at the end.
    """
    from tlsdetect.detect.baseline import Baseline
    from tlsdetect.detect.scoring import SCORE_COLUMNS, score, summarize

    wanted = _columns(columns, list(dict.fromkeys((*schema.COLUMNS, *SCORE_COLUMNS, "reason_codes"))))
    if wanted and fmt in sinks.ALERT_FORMATS:
        raise click.ClickException(f"--columns does not apply to -f {fmt}: its fields are fixed (see the README)")
    with contextlib.ExitStack() as stack:
        letters = stack.enter_context(_dead_letters(dead_letter))
        inputs = _inputs(paths, engine, input_format, letters, progress=not no_progress)
        with _user_errors():
            model = Baseline.load(baseline_dir)
            scored = score(inputs.read_all(), model)
        scored["reason_codes"] = scored["reasons"].map(lambda rs: ", ".join(r["code"] for r in rs))
        if fmt in sinks.ALERT_FORMATS:
            _write_alerts(stack, fmt, output, scored)
        else:
            shown = scored[scored["verdict"] != "ok"] if only_flagged else scored
            default = SCORE_TABLE_COLUMNS if fmt == "table" else SCORE_OUTPUT_COLUMNS
            sink = _open_sink(stack, fmt, output, wanted or list(default))
            sink.write(shown)
            sink.close()
    _report(inputs, letters, dead_letter)
    summary = summarize(scored)
    v = summary["verdicts"]
    click.echo(f"{summary['connections']} connections: {v['intercepted']} intercepted, {v['suspicious']} suspicious, "
               f"{v['ok']} ok", err=True)
    if summary["top_reasons"]:
        click.echo("top reasons: " + ", ".join(f"{k} ({n})" for k, n in summary["top_reasons"].items()), err=True)
    if summary["top_flagged_clients"]:
        click.echo("top flagged clients: " + ", ".join(f"{k} ({n})" for k, n in summary["top_flagged_clients"].items()),
                   err=True)
    _warn_learned_mesh(model)


def _write_alerts(stack: contextlib.ExitStack, fmt: str, output: str | None, scored: pd.DataFrame) -> None:
    """The stream's alerts of the scored rows (not ``ok``), rendered by its own ECS/CEF functions."""
    from tlsdetect.stream.loop import alerts_of

    try:
        fh = stack.enter_context(open(output, "w", encoding="utf-8", newline="")) if output else sys.stdout  # noqa: SIM115
    except OSError as exc:
        raise click.ClickException(f"{output}: cannot write ({exc.strerror or exc})") from None
    sinks.write_alerts(alerts_of(scored), fmt, fh)


@main.command()
@click.argument("fingerprint_value", metavar="FINGERPRINT")
@click.option("--baseline", "baseline_dir", type=UserPath(file_okay=False),
              help="Baseline directory (else knowledge only).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text (always the long form).")
@click.option("--verbose", is_flag=True,
              help="Long form: a TLS stack's whole version string and every source (else name, version, first source).")
def lookup(fingerprint_value: str, baseline_dir: str | None, as_json: bool, verbose: bool) -> None:
    """What is known about one JA3, JA3N or JA4: products, applications, stacks, clients, prevalence."""
    from tlsdetect.detect.baseline import Baseline
    from tlsdetect.detect.lookup import FingerprintShapeError, describe

    with _user_errors():
        model = Baseline.load(baseline_dir) if baseline_dir else None
    try:
        info = describe(fingerprint_value, model, verbose=verbose or as_json)
    except FingerprintShapeError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
        return
    click.echo(f"{info['fingerprint']} ({info['kind']}): verdict {info['verdict']}")
    for line in info["why"]:
        click.echo(f"  - {line}")


# Subcommands that live in their own modules register themselves on ``main`` when imported.
import tlsdetect.cli.serve as cli_serve  # noqa: E402,F401,I001
import tlsdetect.cli.stream as cli_stream  # noqa: E402,F401
import tlsdetect.cli.spark as cli_spark  # noqa: E402,F401

if __name__ == "__main__":
    main()
