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

CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap", ".dmp")
#: Below this many bytes of input a progress bar is noise.
PROGRESS_MIN_BYTES = 64 * 1024 * 1024

EXIT_INPUT = 2


def _expand(paths: tuple[str, ...]) -> list[Path]:
    """Files as given; directories to the capture files inside them (sorted, recursive)."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in CAPTURE_SUFFIXES))
        elif p.exists():
            out.append(p)
        else:
            raise click.ClickException(f"{raw}: no such file or directory")
    if not out:
        raise click.ClickException("no capture files found in: " + " ".join(paths))
    return out


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
def fingerprint(
    paths: tuple[str, ...], fmt: str, output: str | None, engine: str, columns: str | None, no_progress: bool
) -> None:
    """Fingerprint every TLS handshake in pcap/pcapng PATHS (files or directories).

    One row per connection: 4-tuple, SNI, version, ALPN, JA3, JA3N, JA3S, JA4 (with _r, _o,
    _ro) and, where the certificate is in clear (TLS <= 1.2), the server's subject, issuer and
    SHA-256.
    """
    files = _expand(paths)
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
        warnings = _fingerprint_into(sink, files, engine, progress=not no_progress)
        sink.close()
    for w in warnings:
        click.echo(f"warning: {w}", err=True)
    click.echo(f"{sink.rows} connections from {len(files)} file(s)", err=True)


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
