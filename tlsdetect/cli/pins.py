"""``tlsdetect pins``: pin sets as report-only policy. ``lint`` says whether a pin set is safe to ship.

The group is small on purpose: ``check`` and ``suggest`` (traffic against pins) join it from their
own module. Exit status of ``lint``: 0 no errors (warnings allowed), 1 at least one error finding,
2 a policy or observed file could not be read (one line on stderr naming the file and line).
"""

from __future__ import annotations

import datetime as dt
import json

import click

from tlsdetect.sinks.escape import escape_text

__all__ = ["pins_group"]


@click.group("pins")
def pins_group() -> None:
    """Pin sets (Android, iOS, TrustKit/OkHttp, Envoy, tlsdetect-pins): lint them."""


def _iso_date(_ctx: click.Context, _param: click.Parameter, value: str | None) -> dt.date:
    if value is None:
        return dt.datetime.now(dt.UTC).date()
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a YYYY-MM-DD date") from None


@pins_group.command("lint")
@click.argument("policy", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--days", type=click.IntRange(min=0), default=30, show_default=True,
              help="Warn about pin sets that expire within this many days.")
@click.option("--observed", multiple=True, type=click.Path(dir_okay=False),
              help="PEM certificates or a list of SPKI pins seen in traffic: a pin in none is a backup.")
@click.option("--format", "out_format", type=click.Choice(["table", "jsonl"]), default="table", show_default=True)
@click.option("--today", callback=_iso_date, metavar="YYYY-MM-DD",
              help="Judge expiry as of this date (default: today, UTC).")
def lint_cmd(policy: tuple[str, ...], days: int, observed: tuple[str, ...], out_format: str, today: dt.date) -> None:
    """Is a pin set safe to ship? Backup pins, expiry, leaf-only pins, malformed pins, overlaps."""
    from tlsdetect.pins.lint import lint
    from tlsdetect.pins.observed import read_observed
    from tlsdetect.pins.policy import PolicyError, read_policies

    try:
        table = read_policies(policy, strict=False)
        seen = read_observed(list(observed)) if observed else None
    except PolicyError as exc:
        click.echo(f"error: {escape_text(str(exc))}", err=True)
        raise SystemExit(2) from None
    findings = lint(table, today=today, days=days, observed=seen)
    records = findings.astype(object).where(findings.notna(), None).to_dict("records")
    for rec in records:
        rec["line"] = None if rec["line"] is None else int(rec["line"])
        if out_format == "jsonl":
            click.echo(json.dumps(rec))
            continue
        where = f"{rec['source']}:{rec['line']}" if rec["line"] is not None else str(rec["source"])
        click.echo(f"{rec['severity']:<7} {rec['check']:<15} {escape_text(where)}  {escape_text(str(rec['domain']))}: "
                   f"{escape_text(str(rec['message']))}")
    if out_format == "table":
        counts = findings["severity"].value_counts()
        rules = table.groupby(["source", "domain", "include_subdomains"]).ngroups
        click.echo(f"{len(policy)} file(s), {rules} rule(s), {int(table['pin'].notna().sum())} pin(s): "
                   f"{counts.get('error', 0)} error(s), {counts.get('warning', 0)} warning(s), "
                   f"{counts.get('info', 0)} info", err=True)
    if (findings["severity"] == "error").any():
        raise SystemExit(1)


def _observed_commands() -> None:
    """``check``, ``suggest`` and ``ct`` read traffic (tlsdetect.cli.pins_observed, pins_ct); ``lint`` needs none."""
    from tlsdetect.cli.pins_ct import ct
    from tlsdetect.cli.pins_observed import check_cmd, suggest_cmd

    pins_group.add_command(check_cmd)
    pins_group.add_command(suggest_cmd)
    pins_group.add_command(ct)


_observed_commands()
