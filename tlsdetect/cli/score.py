"""``tlsdetect score``: every connection scored against a baseline, as a table or as the stream's alerts."""

from __future__ import annotations

import contextlib
import sys
from typing import TYPE_CHECKING

import click

from tlsdetect.cli.common import (
    ALERT_FORMATS,
    TABLE_FORMATS,
    UserPath,
    all_rows_option,
    baseline_option,
    dead_letters,
    input_options,
    keylog_option,
    open_inputs,
    open_sink,
    open_weird,
    output_file_option,
    parse_columns,
    report,
    report_weird,
    user_errors,
    warn_learned_mesh,
    weird_option,
)
from tlsdetect.cli.policy_options import load_policies, policy_options
from tlsdetect.sinks.escape import escape_text

if TYPE_CHECKING:
    import pandas as pd

    from tlsdetect.wire.keylog import KeyLog


@click.command("score")
@click.argument("paths", nargs=-1, required=True, type=UserPath())
@baseline_option(required=False, help_text="Baseline directory. Without one, rows are scored with the knowledge "
                                           "base and issuer rules alone.")
@click.option("-f", "--format", "fmt", type=click.Choice((*TABLE_FORMATS, *ALERT_FORMATS)), default="table",
              show_default=True,
              help="table, jsonl, csv, parquet: every connection (--only-flagged: the others). ecs, cef: the "
                   "stream's alerts, one per suspicious or intercepted connection (ok rows are not written), as "
                   "ECS JSON lines or CEF lines for the SIEM index the stream feeds.")
@output_file_option
@click.option("--only-flagged", is_flag=True, help="Output only suspicious and intercepted connections.")
@click.option("--columns", help="Comma-separated columns to output (not with ecs/cef: their fields are fixed).")
@input_options
@weird_option
@all_rows_option
@policy_options
@keylog_option
def score_cmd(paths: tuple[str, ...], baseline_dir: str | None, fmt: str, output: str | None, only_flagged: bool,
              columns: str | None, engine: str, input_format: str | None, dead_letter: str | None,
              no_progress: bool, weird: str | None, show_all: bool, keylog: KeyLog | None,
              pins: tuple[str, ...] = (), issuer_policy: tuple[str, ...] = ()) -> None:
    """Score every connection in PATHS against a baseline: score 0-100, verdict, reasons.

    Without --baseline, with the knowledge base and issuer rules alone (the summary says what was not compared).
    A summary (verdict counts, top reasons, top flagged clients) goes to stderr at the end.
    """
    from tlsdetect import schema
    from tlsdetect.detect.baseline import Baseline
    from tlsdetect.detect.scoring import (
        NO_BASELINE_NOT_COMPARED,
        SCORE_COLUMNS,
        SCORE_OUTPUT_COLUMNS,
        SCORE_TABLE_COLUMNS,
        VERDICTS,
        score,
        summarize,
    )
    from tlsdetect.sinks.table import by_column

    policies = load_policies(pins, issuer_policy)
    wanted = parse_columns(columns, list(dict.fromkeys((*schema.COLUMNS, *SCORE_COLUMNS, "reason_codes"))))
    if wanted and fmt in ALERT_FORMATS:
        raise click.ClickException(f"--columns does not apply to -f {fmt}: its fields are fixed (see the README)")
    with contextlib.ExitStack() as stack:
        letters = stack.enter_context(dead_letters(dead_letter))
        inputs = open_inputs(paths, engine, input_format, letters, progress=not no_progress, keylog=keylog)
        with user_errors():
            model = Baseline.load(baseline_dir) if baseline_dir is not None else None
            scored = score(inputs.read_all(), model, policies=policies)
        ledger = open_weird(weird)
        stack.callback(ledger.close)
        ledger.observe(scored)
        scored["reason_codes"] = scored["reasons"].map(lambda rs: ", ".join(r["code"] for r in rs))
        if fmt in ALERT_FORMATS:
            _write_alerts(stack, fmt, output, scored)
        else:
            shown = scored[scored["verdict"] != "ok"] if only_flagged else scored
            default = SCORE_TABLE_COLUMNS if fmt == "table" else SCORE_OUTPUT_COLUMNS
            # a cut table shows intercepted, then suspicious rows before any ok one
            sink = open_sink(stack, fmt, output, wanted or list(default), show_all=show_all,
                             rank=by_column("verdict", VERDICTS))
            sink.write(shown)
            sink.close()
    report(inputs, letters, dead_letter)
    report_weird(ledger, inputs)
    summary = summarize(scored)
    v = summary["verdicts"]
    click.echo(f"{summary['connections']} connections: {v['intercepted']} intercepted, {v['suspicious']} suspicious, "
               f"{v['ok']} ok", err=True)
    if summary["top_reasons"]:
        click.echo("top reasons: " + ", ".join(f"{k} ({n})" for k, n in summary["top_reasons"].items()), err=True)
    if summary["top_flagged_clients"]:
        clients = summary["top_flagged_clients"].items()  # client ids came off the wire: shown escaped
        click.echo("top flagged clients: " + ", ".join(f"{escape_text(str(k))} ({n})" for k, n in clients), err=True)
    if model is None:
        click.echo(NO_BASELINE_NOT_COMPARED, err=True)
    warn_learned_mesh(model)


def _write_alerts(stack: contextlib.ExitStack, fmt: str, output: str | None, scored: pd.DataFrame) -> None:
    """The stream's alerts of the scored rows (not ``ok``), rendered by its own ECS/CEF functions."""
    from tlsdetect.sinks.alerts.alerts import alerts_of, write_alerts

    try:
        fh = stack.enter_context(open(output, "w", encoding="utf-8", newline="")) if output else sys.stdout  # noqa: SIM115
    except OSError as exc:
        raise click.ClickException(f"{output}: cannot write ({exc.strerror or exc})") from None
    write_alerts(alerts_of(scored), fmt, fh)
