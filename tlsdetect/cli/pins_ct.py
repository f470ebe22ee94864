"""``tlsdetect pins ct``: the server names whose observed leaves carry no Certificate Transparency timestamps.

A ``pins lint``-style listing over traffic (captures with visible or ``--keylog``-decrypted chains, Envoy
logs with the PEM fields): one line per (name, leaf) from :func:`tlsdetect.detect.ct.sct_findings`. Exit
status 1 when a line is an ``error`` (a non-public CA's leaf for a public name, issued since CT was
required, without SCTs: what a forged interception leaf looks like), so it can gate a CI job. Not
registered here: the lead wires it into the ``pins`` group (``pins.add_command(pins_ct.ct)``).
"""

from __future__ import annotations

import json

import click

from tlsdetect.cli.common import (
    UserPath,
    dead_letters,
    input_options,
    keylog_option,
    open_inputs,
    report,
    user_errors,
)
from tlsdetect.sinks.escape import escape_text

__all__ = ["ct"]


def _json_value(v: object) -> object:
    """A finding's field for JSON: times as ISO text, a missing value as null."""
    import pandas as pd

    if v is None or v is pd.NaT or v is pd.NA:
        return None
    if isinstance(v, pd.Timestamp):
        return v.isoformat()
    if isinstance(v, str | bool | int | float):
        return v
    return str(v)


@click.command("ct")
@click.argument("paths", nargs=-1, required=True, type=UserPath())
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line instead of text.")
@input_options
@keylog_option
def ct(paths: tuple[str, ...], as_json: bool, engine: str, input_format: str | None, dead_letter: str | None,
       no_progress: bool, keylog: object) -> None:
    """List the server names in PATHS whose leaf certificates embed no SCTs (CT timestamps).

    error: a non-public CA issued it, for a public name, since CT was required (2018-04-30); warning: a
    public CA's leaf without SCTs, or an older leaf. Exit status 1 when there is an error.
    """
    from tlsdetect.detect.ct import sct_findings

    with dead_letters(dead_letter) as letters:
        inputs = open_inputs(paths, engine, input_format, letters, progress=not no_progress,
                             keylog=keylog)  # type: ignore[arg-type]
        with user_errors():
            found = sct_findings(inputs.read_all())
    report(inputs, letters, dead_letter)
    for rec in found.to_dict("records"):
        if as_json:
            click.echo(json.dumps({str(k): _json_value(v) for k, v in rec.items()}))
            continue
        click.echo(f"{rec['level']}: {escape_text(str(rec['sni']))}: leaf {rec['leaf'][:16]}... "
                   f"({escape_text(str(rec['subject']))}) from {escape_text(str(rec['issuer']))} "
                   f"({'public' if rec['public_issuer'] else 'not public'} CA, valid from {rec['not_before']}) "
                   f"has no SCTs; {rec['connections']} connection(s)")
    errors = int((found["level"] == "error").sum()) if len(found) else 0
    click.echo(f"{len(found)} leaf/name pair(s) without SCTs: {errors} error(s), {len(found) - errors} warning(s)",
               err=True)
    if errors:
        raise SystemExit(1)
