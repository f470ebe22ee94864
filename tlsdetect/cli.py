"""The ``tlsdetect`` command.

Errors a user can cause (a file that is not a capture, a missing tool) end in one line on
stderr and a non-zero exit; damage inside a capture is a warning that says where, after the
readable part has been used.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import click

from . import __version__, schema, sinks
from .readers.capture import CaptureError
from .readers.logs import FORMATS, DeadLetter, LogFormatError, detect_format, sniff

#: Below this many bytes of input a progress bar is noise.
PROGRESS_MIN_BYTES = 64 * 1024 * 1024

EXIT_INPUT = 2


def _expand(paths: tuple[str, ...]) -> tuple[list[Path], list[str]]:
    """Files as given; directories to the files inside them that hold a known format.

    A file named on the command line must be readable as some format (else the caller errors);
    a file found inside a directory that is none of them is skipped with a warning.
    """
    out: list[Path] = []
    ignored: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            for f in sorted(f for f in p.rglob("*") if f.is_file()):
                (ignored if sniff(f) is None else out).append(f)
        elif p.exists():
            out.append(p)
        else:
            raise click.ClickException(f"{raw}: no such file or directory")
    if not out:
        raise click.ClickException("no capture or log files found in: " + " ".join(paths))
    skipped = []
    if ignored:
        names = ", ".join(f.name for f in ignored[:5]) + (", ..." if len(ignored) > 5 else "")
        skipped.append(f"skipped {len(ignored)} file(s) that are not captures or known logs: {names}")
    return out, skipped


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
@click.argument("paths", nargs=-1, required=True)
@click.option(
    "-f", "--format", "fmt", type=click.Choice(sinks.FORMATS), default="table", show_default=True,
    help="Output format.",
)
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), help="Write here instead of stdout.")
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
    "--dead-letter", type=click.Path(dir_okay=False, writable=True),
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
    files, skipped = _expand(paths)
    try:
        groups = detect_format(files, input_format)
    except LogFormatError as exc:
        raise click.ClickException(str(exc)) from None
    if fmt == "parquet" and not output:
        raise click.ClickException("parquet output needs a file: add -o FILE")
    wanted = [c.strip() for c in columns.split(",")] if columns else None
    if wanted:
        unknown = [c for c in wanted if c not in schema.COLUMNS]
        if unknown:
            raise click.ClickException(f"unknown column(s): {', '.join(unknown)}")
    with contextlib.ExitStack() as stack:
        if fmt == "parquet":
            sink = sinks.Sink(fmt, path=output, columns=wanted)
        else:
            fh = stack.enter_context(open(output, "w", encoding="utf-8", newline="")) if output else sys.stdout
            sink = sinks.Sink(fmt, fh, columns=wanted)
        letters = stack.enter_context(DeadLetter(dead_letter))
        warnings = list(skipped)
        for kind, group in groups.items():
            if kind == "pcap":
                warnings += _fingerprint_into(sink, group, engine, progress=not no_progress)
            else:
                warnings += _read_logs_into(sink, kind, group, letters)
        sink.close()
    for w in warnings:
        click.echo(f"warning: {w}", err=True)
    if letters.stats.bad_lines:
        where = f"; see {dead_letter}" if dead_letter else " (add --dead-letter FILE to keep them)"
        click.echo(f"warning: {letters.stats.summary()}{where}", err=True)
    click.echo(f"{sink.rows} connections from {len(files)} file(s)", err=True)


def _read_logs_into(sink: sinks.Sink, kind: str, files: list[Path], letters: DeadLetter) -> list[str]:
    """Read one group of related logs (e.g. ssl.log with its x509.log) into ``sink``."""
    try:
        if kind == "zeek":
            from .readers.zeek import read_zeek

            sink.write(read_zeek(files, dead_letter=letters))
        elif kind == "suricata":
            from .readers.suricata import read_suricata

            sink.write(read_suricata(files, dead_letter=letters))
        else:
            from .readers.envoy import read_envoy

            sink.write(read_envoy(files, dead_letter=letters))
    except LogFormatError as exc:
        raise click.ClickException(str(exc)) from None
    return list(letters.stats.warnings)


def _fingerprint_into(sink: sinks.Sink, files: list[Path], engine: str, *, progress: bool) -> list[str]:
    """Stream every file's connections into ``sink``; returns the warnings to show."""
    try:
        if engine == "tshark":
            from .readers.tshark import TsharkError, read_pcap_tshark

            try:
                df, tstats = read_pcap_tshark(files)
            except TsharkError as exc:
                raise click.ClickException(str(exc)) from None
            sink.write(df)
            return list(getattr(tstats, "warnings", []))
        from .readers.pcap import PcapStats, iter_pcap

        stats = PcapStats()
        for f, callback in _progress_bytes(files, progress):
            for chunk in iter_pcap(f, stats=stats, progress=callback):  # type: ignore[arg-type]
                sink.write(chunk)
        return stats.warnings
    except CaptureError as exc:
        raise click.ClickException(str(exc)) from None


if __name__ == "__main__":
    main()
