"""What the command modules share: path checks, options, input and output plumbing, errors, summaries.

A path a user mistypes must end in one line naming the option, never in a traceback from deep
inside a reader or a writer. ``click.Path`` checks a path that exists; what it lets through is
checked here once for every command: an empty value (``Path("")`` is the current directory, so
``-o ""`` would write a baseline into it and ``--baseline ""`` would load one from it), and a path
to be written whose directory does not exist or is not a directory.

Every command module imports this one when ``tlsdetect`` starts (``--help`` included), so it
imports only click and the standard library: pandas, the readers and the baseline are imported by
the functions that use them.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import click

from tlsdetect.sinks.escape import escape_text

if TYPE_CHECKING:
    import pandas as pd

    from tlsdetect.detect.baseline import Baseline
    from tlsdetect.detect.mesh import MeshCA
    from tlsdetect.readers.inputs import Inputs
    from tlsdetect.readers.logs import DeadLetter
    from tlsdetect.sinks.files import Sink
    from tlsdetect.sinks.table import Rank
    from tlsdetect.sinks.weird import WeirdLog
    from tlsdetect.wire.keylog import KeyLog

__all__ = [
    "ALERT_FORMATS",
    "EXIT_INPUT",
    "INPUT_FORMATS",
    "MESH_CA_HELP",
    "PROGRESS_MIN_BYTES",
    "TABLE_FORMATS",
    "TABLE_ROWS",
    "UserPath",
    "all_rows_option",
    "baseline_option",
    "client_key_option",
    "dead_letter_option",
    "dead_letters",
    "engine_option",
    "fit_output_option",
    "force_option",
    "input_format_option",
    "input_options",
    "keylog_option",
    "mesh_ca_option",
    "no_model_option",
    "no_progress_option",
    "open_inputs",
    "open_sink",
    "open_weird",
    "output_file_option",
    "parse_columns",
    "print_summary",
    "progress_bytes",
    "report",
    "report_weird",
    "user_errors",
    "warn_learned_mesh",
    "weird_option",
    "write_behind",
]

F = TypeVar("F", bound=Callable[..., Any])

#: Exit status of ``serve`` for an input it cannot use (a token file, a baseline, a port).
EXIT_INPUT = 2

#: Below this many bytes of input a progress bar is noise.
PROGRESS_MIN_BYTES = 64 * 1024 * 1024

#: ``readers.logs.FORMATS``, ``sinks.files.FORMATS`` and ``sinks.files.ALERT_FORMATS``, named again
#: here so that building the options does not import pandas (tests/test_cli.py checks they agree).
INPUT_FORMATS = ("pcap", "zeek", "suricata", "envoy")
TABLE_FORMATS = ("table", "jsonl", "csv", "parquet")
ALERT_FORMATS = ("ecs", "cef")
#: ``sinks.table.DEFAULT_MAX_ROWS``, named again for ``--all``'s help (tests/test_table.py checks it).
TABLE_ROWS = 100


# --- paths and --mesh-ca ---------------------------------------------------------------------------------
class UserPath(click.Path):
    """``click.Path`` that also refuses an empty value and, with ``output=True``, a path that cannot be made.

    ``output=True`` is a file or directory the command writes: a file's directory must exist; a
    directory is created with its parents, so the nearest existing ancestor must be a directory.
    """

    def __init__(self, *, output: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.output = output

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str | os.PathLike) and not os.fspath(value).strip():
            self.fail("the path is empty", param, ctx)
        out = super().convert(value, param, ctx)
        if self.output:
            path = Path(os.fsdecode(out)).absolute()
            if not self.dir_okay:  # a file: written where it is, its directory is not created
                if not path.parent.is_dir():
                    self.fail(f"{path.parent}: no such directory", param, ctx)
            else:
                ancestor = next((p for p in (path, *path.parents) if p.exists()), None)
                if ancestor is not None and not ancestor.is_dir():
                    self.fail(f"{ancestor} is a file, so {path} cannot be created", param, ctx)
        return out


MESH_CA_HELP = ("The mesh's CA: a PEM file or a DN ('CN=...,O=...'); repeat for several. Default: no mesh CA "
                "(issuer signals use the knowledge base only). 'learn' learns the dominant private issuer of "
                "PATHS (only for traffic known to be mesh-only; flagged as LEARNED everywhere); 'auto' is its "
                "deprecated old name; 'none' is the default said out loud.")


def _mesh_ca(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> list[MeshCA] | Literal["learn"]:
    from tlsdetect.detect.mesh import DEPRECATED_AUTO, parse_mesh_cas

    if any(v.strip().lower() == DEPRECATED_AUTO for v in value):
        click.echo("warning: --mesh-ca auto is deprecated and no longer the default: it means 'learn' (the mesh CA "
                   "is learned from the fitted traffic); write --mesh-ca learn, or give the CA", err=True)
    try:
        return parse_mesh_cas(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


def mesh_ca_option(f: F) -> F:
    """``--mesh-ca`` (repeatable), parsed into what ``Baseline(mesh_ca=...)`` takes."""
    return click.option("--mesh-ca", "mesh_ca", multiple=True, metavar="FILE.pem|DN|learn|none",
                        callback=_mesh_ca, help=MESH_CA_HELP)(f)


# --- options used by more than one command ---------------------------------------------------------------
def output_file_option(f: F) -> F:
    """``-o/--output FILE`` of the commands that write a table (default: stdout)."""
    return click.option("-o", "--output", type=UserPath(dir_okay=False, writable=True, output=True),
                        help="Write here instead of stdout.")(f)


def input_format_option(f: F) -> F:
    return click.option("--input-format", type=click.Choice(INPUT_FORMATS),
                        help="Skip detection: read every PATH as this format.")(f)


def no_progress_option(f: F) -> F:
    return click.option("--no-progress", is_flag=True, help="Never show a progress bar.")(f)


def engine_option(help_text: str) -> Callable[[F], F]:
    return click.option("--engine", type=click.Choice(["native", "tshark"]), default="native", show_default=True,
                        help=help_text)


def dead_letter_option(help_text: str) -> Callable[[F], F]:
    return click.option("--dead-letter", type=UserPath(dir_okay=False, writable=True, output=True),
                        help=help_text)


def weird_option(f: F) -> F:
    """``--weird FILE``: the anomaly ledger (:mod:`tlsdetect.sinks.weird`)."""
    return click.option("--weird", type=UserPath(dir_okay=False, writable=True, output=True),
                        help="Write the anomaly ledger here (JSON lines): each connection the reader gave up on "
                             "(name: its 'incomplete' reason, with time and 4-tuple) and each counted skip.")(f)


def open_weird(path: str | None) -> WeirdLog:
    """The ledger; a path that cannot be opened is one line, not a traceback."""
    from tlsdetect.sinks.weird import WeirdLog

    try:
        return WeirdLog(path)
    except OSError as exc:
        raise click.ClickException(f"{path}: cannot write the anomaly ledger ({exc.strerror or exc})") from None


def report_weird(weird: WeirdLog, inputs: Inputs) -> None:
    """Close the ledger with the read's counted skips; its summary line on stderr."""
    weird.finish(inputs.stats)
    line = weird.summary()
    if line is not None:
        click.echo(escape_text(line), err=True)


def _keylog(ctx: click.Context, param: click.Parameter, value: str | None) -> KeyLog | None:
    from tlsdetect.wire.keylog import KeyLogError, read_keylog

    if value is None:
        return None
    try:
        return read_keylog(value)
    except KeyLogError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


def keylog_option(f: F) -> F:
    """``--keylog FILE``: an NSS key log (``SSLKEYLOGFILE``), read into a ``KeyLog`` for :func:`open_inputs`."""
    return click.option("--keylog", type=UserPath(dir_okay=False, exists=True), callback=_keylog,
                        help="NSS key log (SSLKEYLOGFILE, openssl s_client -keylogfile): capture engines decrypt "
                             "the handshake of TLS 1.3 connections it has secrets for and fill their certificate "
                             "columns; the 'keylog' column says how each went.")(f)


def input_options(f: F) -> F:
    """``--engine``, ``--input-format``, ``--dead-letter``, ``--no-progress`` of the detection commands."""
    for opt in reversed([
        engine_option("Capture engine (see 'fingerprint --help')."),
        input_format_option,
        dead_letter_option("Append log lines that cannot be read here."),
        no_progress_option,
    ]):
        f = opt(f)
    return f


def baseline_option(*, required: bool, help_text: str) -> Callable[[F], F]:
    """``--baseline DIR`` (the directory ``baseline fit`` writes)."""
    return click.option("--baseline", "baseline_dir", required=required, type=UserPath(file_okay=False),
                        help=help_text)


# the options that ``baseline fit`` and ``spark fit`` share
def fit_output_option(f: F) -> F:
    return click.option("-o", "--output", required=True, type=UserPath(file_okay=False, output=True),
                        help="Baseline directory to write (written beside it, then renamed into place).")(f)


def force_option(f: F) -> F:
    return click.option("--force", is_flag=True, help="Replace the baseline already in OUTPUT.")(f)


def client_key_option(f: F) -> F:
    return click.option("--client-key", default="auto", show_default=True,
                        help="What identifies a client: auto (mTLS subject, else IP), ip, mtls, ua, or a column "
                             "name.")(f)


def no_model_option(f: F) -> F:
    return click.option("--no-model", is_flag=True, help="Do not fit the ClientHello population model.")(f)


# --- reading ---------------------------------------------------------------------------------------------
def progress_bytes(files: list[Path], enabled: bool) -> Iterator[tuple[Path, object]]:
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


def open_inputs(paths: tuple[str, ...], engine: str, input_format: str | None, letters: DeadLetter, *,
                progress: bool, keylog: KeyLog | None = None) -> Inputs:
    """The readers over ``paths``, with a progress bar unless ``progress`` is False."""
    from tlsdetect.readers.inputs import Inputs

    return Inputs(paths, engine=engine, input_format=input_format, dead_letter=letters,
                  progress=lambda files: progress_bytes(files, progress), keylog=keylog)


def dead_letters(path: str | None) -> DeadLetter:
    """The dead-letter file opened for appending; a path that cannot be opened is one line, not a traceback."""
    from tlsdetect.readers.logs import DeadLetter

    try:
        return DeadLetter(path)
    except OSError as exc:
        raise click.ClickException(f"{path}: cannot write dead letters ({exc.strerror or exc})") from None


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Input problems a user can fix end in one line and exit status 1, not a traceback.

    Both error classes subclass ``ValueError`` and are imported only when one is raised: importing them up
    front cost ``lookup`` the whole reader stack (pcap engine, tshark) it never uses.
    """
    try:
        yield
    except ValueError as exc:
        from tlsdetect.detect.baseline_dir import BaselineError
        from tlsdetect.readers.inputs import InputError

        if isinstance(exc, InputError | BaselineError):
            raise click.ClickException(str(exc)) from None
        raise


def report(inputs: Inputs, letters: DeadLetter, dead_letter: str | None) -> None:
    """The readers' warnings and the dead-letter count on stderr."""
    for w in inputs.warnings:  # a warning may quote the input (a field name, a line): shown escaped
        click.echo(f"warning: {escape_text(w)}", err=True)
    if inputs.keylog is not None:
        click.echo(escape_text(inputs.keylog.summary()), err=True)
    if letters.stats.bad_lines:
        where = f"; see {dead_letter}" if dead_letter else " (add --dead-letter FILE to keep them)"
        click.echo(f"warning: {letters.stats.summary()}{where}", err=True)


# --- writing ---------------------------------------------------------------------------------------------
def parse_columns(text: str | None, valid: list[str]) -> list[str] | None:
    """``--columns`` as a list (None: the default); a name not in ``valid`` is one line that lists them all."""
    wanted = [c.strip() for c in text.split(",") if c.strip()] if text else []
    unknown = [c for c in wanted if c not in valid]
    if unknown:
        raise click.ClickException(f"unknown column(s): {', '.join(unknown)}; valid columns: {', '.join(valid)}")
    return wanted or None


def open_sink(stack: contextlib.ExitStack, fmt: str, output: str | None, columns: list[str] | None,
              table_columns: tuple[str, ...] | None = None, *, show_all: bool = False,
              rank: Rank | None = None) -> Sink:
    """A table writer to ``output`` (stdout if None), closed with ``stack`` when it is a file.

    The table view shows :data:`~tlsdetect.sinks.table.DEFAULT_MAX_ROWS` rows (``rank`` picks which)
    unless ``show_all``; the other formats write every row.
    """
    from tlsdetect.sinks.files import Sink
    from tlsdetect.sinks.table import DEFAULT_MAX_ROWS

    if fmt == "parquet":
        if not output:
            raise click.ClickException("parquet output needs a file: add -o FILE")
        return Sink(fmt, path=output, columns=columns)
    try:
        fh = stack.enter_context(open(output, "w", encoding="utf-8", newline="")) if output else sys.stdout  # noqa: SIM115
    except OSError as exc:
        raise click.ClickException(f"{output}: cannot write ({exc.strerror or exc})") from None
    if fmt == "table" and columns is None and table_columns is not None:
        columns = list(table_columns)
    return Sink(fmt, fh, columns=columns, max_rows=None if show_all else DEFAULT_MAX_ROWS, rank=rank)


def all_rows_option(f: F) -> F:
    """``--all``: the table view shows every row (it otherwise stops at ``sinks.table.DEFAULT_MAX_ROWS``)."""
    return click.option("--all", "show_all", is_flag=True,
                        help=f"Table: show every row (default: {TABLE_ROWS}, flagged first for score; the "
                             "summary counts every row). The file formats always write every row.")(f)


def write_behind(chunks: Iterator[pd.DataFrame], write: Callable[[pd.DataFrame], None]) -> None:
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


# --- baseline summaries ----------------------------------------------------------------------------------
def print_summary(model: Baseline, where: str) -> None:
    """What a fitted or loaded baseline holds, on stdout (``baseline fit|show``, ``spark fit``)."""
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
        click.echo(f"  mesh CA ({m['role']}): {escape_text(str(m['issuer']))}  key id {m['ski'] or '?'}  [{how}]")
    hello_model = summary.get("model")
    click.echo("  model: " + ("none" if not hello_model else
                              f"nearest-neighbour novelty over {hello_model['hellos']} distinct hellos "
                              f"({hello_model['values']} values), outlier beyond Jaccard distance "
                              f"{hello_model['threshold']}"))
    warn_learned_mesh(model)


def warn_learned_mesh(model: Baseline | None) -> None:
    """Say on stderr, loudly, that the mesh CA in use was learned from traffic rather than given."""
    warning = model.learned_mesh_warning() if model is not None else None
    if warning:  # it names the learned issuer, a DN off the wire
        click.echo(f"WARNING: {escape_text(warning)}", err=True)
