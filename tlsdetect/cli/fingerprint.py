"""``tlsdetect fingerprint``: one row per TLS connection of captures and logs, in a table format."""

from __future__ import annotations

import contextlib
import gc
from typing import TYPE_CHECKING

import click

from tlsdetect.cli.common import (
    TABLE_FORMATS,
    UserPath,
    all_rows_option,
    dead_letter_option,
    dead_letters,
    engine_option,
    input_format_option,
    keylog_option,
    no_progress_option,
    open_inputs,
    open_sink,
    open_weird,
    output_file_option,
    parse_columns,
    report,
    report_weird,
    user_errors,
    weird_option,
    write_behind,
)

if TYPE_CHECKING:
    import pandas as pd

    from tlsdetect.wire.keylog import KeyLog


@click.command()
@click.argument("paths", nargs=-1, required=True, type=UserPath())
@click.option(
    "-f", "--format", "fmt", type=click.Choice(TABLE_FORMATS), default="table", show_default=True,
    help="Output format.",
)
@output_file_option
@engine_option("native: vectorised reader (TLS over TCP, QUIC Initials, DTLS). tshark: Wireshark's dissection.")
@click.option("--columns", help="Comma-separated columns to output (default: all for files, a summary for the table).")
@no_progress_option
@input_format_option
@dead_letter_option("Append log lines that cannot be read here (JSON lines: file, line, reason, text).")
@weird_option
@all_rows_option
@keylog_option
def fingerprint(
    paths: tuple[str, ...],
    fmt: str,
    output: str | None,
    engine: str,
    columns: str | None,
    no_progress: bool,
    input_format: str | None,
    dead_letter: str | None,
    weird: str | None,
    show_all: bool,
    keylog: KeyLog | None,
) -> None:
    """Fingerprint every TLS handshake in PATHS: pcap/pcapng captures, Zeek ssl/x509/conn logs,
    Suricata EVE or Envoy access logs (files or directories; the format is detected from the
    content, related logs are given together).

    One row per connection: 4-tuple, SNI, version, ALPN, JA3, JA3N, JA3S, JA4 (with _r, _o,
    _ro) and, where the certificate is visible, the server's subject, issuer and SHA-256.
    """
    from tlsdetect import schema

    if fmt == "parquet" and not output:
        raise click.ClickException("parquet output needs a file: add -o FILE")
    wanted = parse_columns(columns, list(schema.COLUMNS))
    with contextlib.ExitStack() as stack:
        letters = stack.enter_context(dead_letters(dead_letter))
        inputs = open_inputs(paths, engine, input_format, letters, progress=not no_progress, keylog=keylog)
        sink = open_sink(stack, fmt, output, wanted, show_all=show_all)
        ledger = open_weird(weird)
        stack.callback(ledger.close)

        def write(chunk: pd.DataFrame) -> None:
            ledger.observe(chunk)
            sink.write(chunk)

        # The imports (pandas, pyarrow, the readers) are ~70,000 tracked objects that live to the end: out of
        # the collector's full passes, which walked them all, ~6% of a capture's CPU (perf, il20k.pcap)
        gc.freeze()
        with user_errors():
            write_behind(inputs.chunks(), write)
        sink.close()
    report(inputs, letters, dead_letter)
    report_weird(ledger, inputs)
    click.echo(f"{sink.rows} connections from {len(inputs.files)} file(s)", err=True)
