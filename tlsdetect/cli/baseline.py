"""``tlsdetect baseline fit|show``: learn what clean traffic looks like, and inspect what was learned."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from tlsdetect.cli.common import (
    UserPath,
    client_key_option,
    dead_letters,
    fit_output_option,
    force_option,
    input_options,
    mesh_ca_option,
    no_model_option,
    open_inputs,
    print_summary,
    report,
    user_errors,
)
from tlsdetect.sinks.escape import escape_text

if TYPE_CHECKING:
    import pandas as pd

    from tlsdetect.detect.mesh import MeshSpec


@click.group()
def baseline() -> None:
    """Learn what clean traffic looks like (fit) and inspect a baseline (show)."""


def time_filter(df: pd.DataFrame, since: str | None, until: str | None) -> pd.DataFrame:
    """The rows of ``df`` in [since, until) (ISO 8601, UTC if no zone); a bad time is one line."""
    if not since and not until:
        return df
    import pandas as pd

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


@baseline.command("fit")
@click.argument("paths", nargs=-1, required=True, type=UserPath())
@fit_output_option
@force_option
@client_key_option
@mesh_ca_option
@click.option("--since", help="Learn only from connections at or after this time (ISO 8601, UTC if no zone).")
@click.option("--until", help="Learn only from connections before this time.")
@click.option("--update", is_flag=True, help="Fold the input into the existing baseline in OUTPUT (partial_fit).")
@no_model_option
@input_options
def baseline_fit(paths: tuple[str, ...], output: str, force: bool, client_key: str, mesh_ca: MeshSpec,
                 since: str | None, until: str | None, update: bool, no_model: bool, engine: str,
                 input_format: str | None, dead_letter: str | None, no_progress: bool) -> None:
    """Learn a baseline from traffic believed clean in PATHS (captures and logs, like 'fingerprint').

    No mesh CA unless one is given (--mesh-ca FILE.pem|DN) or learning is asked for (--mesh-ca learn).
    An existing baseline in OUTPUT is replaced only with --force (or folded into with --update).
    """
    from tlsdetect.detect.baseline import Baseline
    from tlsdetect.detect.baseline_dir import check_save_target

    with user_errors():
        check_save_target(Path(output), overwrite=force or update)  # before reading: fail in a second, not later
    with contextlib.ExitStack() as stack:
        letters = stack.enter_context(dead_letters(dead_letter))
        inputs = open_inputs(paths, engine, input_format, letters, progress=not no_progress)
        with user_errors():
            df = time_filter(inputs.read_all(), since, until)
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
    report(inputs, letters, dead_letter)
    print_summary(model, output)


def server_profile_line(profiles: Any, clear_certs: int) -> str:
    """One line on the server profiles ``meta.json`` summarises (``server_profiles``), as ``baseline show`` prints it.

    ``None``: a baseline written before they were learned, so scoring compares no server answers with it.
    """
    if profiles is None:
        return "  server profiles: none (a baseline from before they were learned: refit to compare server answers)"
    try:
        servers, kinds = profiles["servers"], profiles["profiles"]
        by_name, by_addr, families = int(servers["sni"]), int(servers["addr"]), int(profiles["families"])
        per_kind = ", ".join(f"{k} {int(v)}" for k, v in kinds.items())
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return f"  server profiles: unreadable in meta.json ({type(exc).__name__}: {exc})"
    if by_name + by_addr == 0:
        return "  server profiles: none (the fitted traffic showed no server answers)"
    return (f"  server profiles: {by_name} servers by name, {by_addr} by address, {families} hello families; "
            f"profiles per kind: {per_kind}; certificates seen in clear: {clear_certs}")


@baseline.command("show")
@click.argument("directory", type=UserPath(file_okay=False))
@click.option("--clients", "n_clients", default=10, show_default=True, help="How many clients to list.")
def baseline_show(directory: str, n_clients: int) -> None:
    """Print what a baseline knows: counts, mesh CAs, the busiest clients and their fingerprints."""
    from tlsdetect.detect.baseline import Baseline
    from tlsdetect.detect.baseline_dir import read_meta

    with user_errors():
        model = Baseline.load(directory)
        _, meta, _ = read_meta(Path(directory))
    print_summary(model, directory)
    summary = meta.get("summary")
    click.echo(server_profile_line(summary.get("server_profiles") if isinstance(summary, dict) else None,
                                   int(model.server_certs_["cert"].nunique())))
    stab = model.client_stability().set_index("client_id")
    clients = model.clients_.sort_values("connections", ascending=False).head(n_clients)
    fps = model.fingerprints_[model.fingerprints_["kind"] == "ja4"]
    for rec in clients.itertuples(index=False):
        st = stab["stability"].get(rec.client_id, float("nan"))
        click.echo(f"  client {escape_text(str(rec.client_id))}: {rec.connections} connections, stability {st:.0%}")
        mine = fps[fps["client_id"] == rec.client_id].sort_values("count", ascending=False).head(3)
        for f in mine.itertuples(index=False):
            click.echo(f"      {escape_text(str(f.value))}  x{f.count}")
