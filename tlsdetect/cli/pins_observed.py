"""``tlsdetect pins check`` and ``pins suggest``: pin sets against the chains the network really saw.

The two commands of the ``pins`` group that read traffic (``pins lint`` needs none). The logic is in
:mod:`tlsdetect.pins.check` and :mod:`tlsdetect.pins.suggest`; this module reads, writes and sets the
exit status: ``check`` exits 1 when a connection would have been rejected, 0 when none would (hidden
chains do not fail it; they are counted and listed), 2 for a policy or input it cannot read.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sys
from typing import IO, TYPE_CHECKING, Any

import click

from tlsdetect.cli.common import (
    UserPath,
    dead_letters,
    input_options,
    keylog_option,
    open_inputs,
    output_file_option,
    report,
)
from tlsdetect.sinks.escape import escape_text

if TYPE_CHECKING:
    import pandas as pd

    from tlsdetect.pins.check import CheckReport
    from tlsdetect.wire.keylog import KeyLog

__all__ = ["check_cmd", "suggest_cmd"]

#: Exit status: connections a pin set would reject.
EXIT_VIOLATIONS = 1
#: Exit status: a policy or input that cannot be read.
EXIT_UNREADABLE = 2


class Unreadable(click.ClickException):
    exit_code = EXIT_UNREADABLE


def _date(ctx: click.Context, param: click.Parameter, value: str | None) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)") from None


def _read_observed(stack: contextlib.ExitStack, paths: tuple[str, ...], engine: str, input_format: str | None,
                   dead_letter: str | None, no_progress: bool, keylog: KeyLog | None = None) -> pd.DataFrame:
    from tlsdetect.readers.inputs import InputError

    letters = stack.enter_context(dead_letters(dead_letter))
    inputs = open_inputs(paths, engine, input_format, letters, progress=not no_progress, keylog=keylog)
    try:
        df = inputs.read_all()
    except InputError as exc:
        raise Unreadable(str(exc)) from None
    report(inputs, letters, dead_letter)
    return df


def _out(stack: contextlib.ExitStack, output: str | None) -> IO[str]:
    if output is None:
        return sys.stdout
    try:
        return stack.enter_context(open(output, "w", encoding="utf-8"))
    except OSError as exc:
        raise Unreadable(f"{output}: cannot write ({exc.strerror or exc})") from None


def _clean(v: Any) -> Any:
    import pandas as pd

    if v is None or (not isinstance(v, list | tuple) and pd.isna(v)):
        return None
    if hasattr(v, "item"):
        return v.item()
    return v


def _jsonl(fh: IO[str], kind: str, frame: pd.DataFrame) -> None:
    for rec in frame.to_dict("records"):
        fh.write(json.dumps({"record": kind, **{k: _clean(v) for k, v in rec.items()}}, default=str) + "\n")


def _table(fh: IO[str], result: CheckReport, show_all: bool) -> None:
    conns = result.connections
    fh.write("domain                                    violation  hidden  match  expired  unpinned\n")
    for rec in result.domains.itertuples(index=False):
        fh.write(f"{escape_text(str(rec.domain)):<40}  {rec.violation:>9}  {rec.hidden:>6}  {rec.match:>5}  "
                 f"{rec.expired:>7}  {rec.unpinned:>8}\n")
    listed = conns if show_all else conns[conns["status"].isin(["violation", "hidden"])]
    if len(listed):
        fh.write("\nconnections" + ("" if show_all else " that would be rejected or were not visible") + ":\n")
    for r in listed.to_dict("records"):
        where = f"{r['client_ip']} -> {r['server_ip']}:{r['server_port']}"
        what = r["reason"] if r["status"] == "hidden" else f"issuer {r['issuer']}; chain {r['observed']}"
        fh.write(escape_text(f"{r['status']:<9} {r['ts']} {where} sni={r['sni']} [{r['domain']}] {what}") + "\n")
    fh.write("\npins:\n")
    for rec in result.pins.itertuples(index=False):
        backup = " backup" if rec.backup is True else ""
        fh.write(escape_text(f"  {rec.domain} {rec.kind}:{rec.pin}{backup} matched {rec.matched} "
                             f"connection(s) ({rec.source}:{rec.line})") + "\n")


@click.command("check")
@click.argument("policies", nargs=-1, required=True, type=UserPath(exists=True, dir_okay=False))
@click.option("--observed", "observed", multiple=True, required=True, type=UserPath(exists=True),
              help="Traffic to check (captures, Zeek, Suricata or Envoy logs); repeat for several.")
@click.option("-f", "--format", "fmt", type=click.Choice(["table", "jsonl"]), default="table", show_default=True,
              help="table: per-domain counts, the rejected and hidden connections, and what each pin matched. "
                   "jsonl: one record per governed connection ('record': 'connection'), per domain and per pin.")
@output_file_option
@click.option("--today", callback=_date, metavar="YYYY-MM-DD",
              help="The date pin-set expiry is judged on (default: today, UTC).")
@click.option("--all", "show_all", is_flag=True, help="Table: list matching connections too.")
@input_options
@keylog_option
def check_cmd(policies: tuple[str, ...], observed: tuple[str, ...], fmt: str, output: str | None,
              today: dt.date | None, show_all: bool, engine: str, input_format: str | None, dead_letter: str | None,
              no_progress: bool, keylog: KeyLog | None = None) -> None:
    """Which observed connections would POLICY (pin sets) have rejected? Report-only pinning.

    Exit status 1 when at least one would have been; connections whose chain was not visible (TLS 1.3
    without a key log, resumed sessions, logs without certificates) are counted as hidden, never as clean.
    """
    from tlsdetect.pins.check import check
    from tlsdetect.pins.policy import PolicyError, read_policies

    try:
        table = read_policies(policies)
    except PolicyError as exc:
        raise Unreadable(str(exc)) from None
    with contextlib.ExitStack() as stack:
        df = _read_observed(stack, observed, engine, input_format, dead_letter, no_progress, keylog)
        result = check(table, df, today=today)
        fh = _out(stack, output)
        if fmt == "jsonl":
            _jsonl(fh, "connection", result.connections)
            _jsonl(fh, "domain", result.domains)
            _jsonl(fh, "pin", result.pins)
        else:
            _table(fh, result, show_all)
    counts = result.connections["status"].value_counts()
    click.echo(f"{len(result.connections)} connection(s) to pinned names: "
               + ", ".join(f"{int(counts.get(s, 0))} {s}" for s in ("violation", "hidden", "match", "expired",
                                                                     "unpinned")), err=True)
    if result.violations:
        raise SystemExit(EXIT_VIOLATIONS)


@click.command("suggest")
@click.argument("paths", nargs=-1, required=True, type=UserPath(exists=True))
@click.option("-f", "--format", "fmt", type=click.Choice(["pins", "table", "jsonl"]), default="pins",
              show_default=True, help="pins: a tlsdetect-pins file to start from; table; jsonl (one pin a line).")
@output_file_option
@click.option("--expires-in", "expires_in", type=click.IntRange(1, 3650), default=90, show_default=True,
              help="Days until the suggested pin sets expire (a pin set without an expiry bricks clients).")
@input_options
def suggest_cmd(paths: tuple[str, ...], fmt: str, output: str | None, expires_in: int, engine: str,
                input_format: str | None, dead_letter: str | None, no_progress: bool) -> None:
    """A pin set to start from, per server name in PATHS: the intermediate's SPKI and the leaf's, marked.

    It never holds a backup pin: a backup key must be generated offline and never served, so no traffic
    shows it. Names whose chain was never visible are listed on stderr.
    """
    from tlsdetect.pins.suggest import BACKUP_REMINDER, pinfile_text, suggest

    with contextlib.ExitStack() as stack:
        df = _read_observed(stack, paths, engine, input_format, dead_letter, no_progress)
        pins, unseen = suggest(df)
        fh = _out(stack, output)
        if fmt == "pins":
            expires = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=expires_in)
            fh.write(pinfile_text(pins, expires))
        elif fmt == "jsonl":
            _jsonl(fh, "pin", pins)
        else:
            for rec in pins.itertuples(index=False):
                fh.write(escape_text(f"{rec.domain:<40} {rec.kind:<4} {rec.pin}  {rec.role}: {rec.subject} "
                                     f"({rec.connections})") + "\n")
    for rec in unseen.itertuples(index=False):
        click.echo(escape_text(f"no chain seen for {rec.domain} ({rec.connections} connection(s)): nothing to "
                               "suggest (TLS 1.3 hides it; give a TLS 1.2 capture or a log with certificates)"),
                   err=True)
    click.echo(f"reminder: {BACKUP_REMINDER}", err=True)
