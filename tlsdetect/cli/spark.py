"""``tlsdetect spark fit|score``: the baseline and scoring commands as Spark jobs (``[spark]`` extra).

PySpark is imported only when one of these commands runs. See :mod:`tlsdetect.spark` for what
runs where and for the ``spark-submit`` entry.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from tlsdetect.cli.common import (
    UserPath,
    baseline_option,
    client_key_option,
    fit_output_option,
    force_option,
    input_format_option,
    mesh_ca_option,
    no_model_option,
    print_summary,
)

if TYPE_CHECKING:
    from tlsdetect.detect.mesh import MeshSpec

_MASTER_HELP = ("Spark master: local[2], local[*], spark://host:7077, yarn, k8s://... "
                "(default: spark-submit's when run under it, else local[2]).")


def _spark_options(f: Any) -> Any:
    opts = [
        click.option("--master", default=None, help=_MASTER_HELP),
        click.option("--driver-memory", default="2g", show_default=True,
                     help="Driver JVM heap when this command starts Spark itself."),
        input_format_option,
        click.option("--split-mb", type=float, default=128.0, show_default=True,
                     help="Split Zeek ssl, Suricata and Envoy logs into tasks of at most this size (smaller when "
                          "needed to give every core a task, as Spark splits files)."),
        click.option("--conf", "confs", multiple=True, metavar="KEY=VALUE", help="Extra Spark configuration."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


@contextmanager
def _session(master: str | None, driver_memory: str, confs: tuple[str, ...]) -> Iterator[Any]:
    try:
        from tlsdetect.spark import session
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise click.ClickException(f"the spark commands need PySpark: pip install 'tlsdetect[spark]' ({exc})") from None
    conf = {}
    for item in confs:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.ClickException(f"--conf {item!r}: expected KEY=VALUE")
        conf[key] = value
    spark = session(master, driver_memory=driver_memory, conf=conf)
    try:
        yield spark
    finally:
        spark.stop()


@click.group("spark")
def spark_group() -> None:
    """Fit a baseline and score connections as Spark jobs (local[2], a standalone cluster, YARN)."""


@spark_group.command("fit")
@click.argument("paths", nargs=-1, required=True, type=UserPath())
@fit_output_option
@force_option
@client_key_option
@mesh_ca_option
@no_model_option
@_spark_options
def spark_fit(paths: tuple[str, ...], output: str, force: bool, client_key: str, mesh_ca: MeshSpec, no_model: bool,
              master: str | None, driver_memory: str, input_format: str | None, split_mb: float,
              confs: tuple[str, ...]) -> None:
    """Learn a baseline from PATHS with Spark; writes the same directory as 'tlsdetect baseline fit'.

    No mesh CA unless one is given (--mesh-ca FILE.pem|DN) or learning is asked for (--mesh-ca learn).
    """
    from tlsdetect.detect.baseline_dir import BaselineError, check_save_target
    from tlsdetect.readers.inputs import InputError

    try:
        check_save_target(Path(output), overwrite=force)  # before Spark starts
    except BaselineError as exc:
        raise click.ClickException(str(exc)) from None
    t0 = time.perf_counter()
    with _session(master, driver_memory, confs) as spark:
        from tlsdetect.spark import fit_baseline, read_connections

        warnings: list[str] = []
        try:
            df = read_connections(spark, list(paths), input_format=input_format,
                                  split_bytes=int(split_mb * 1024 * 1024), warnings=warnings)
            model = fit_baseline(df, client_key=client_key, mesh_ca=mesh_ca, model=not no_model)
        except InputError as exc:
            raise click.ClickException(str(exc)) from None
        except ValueError as exc:
            raise click.ClickException(f"cannot fit: {exc}") from None
        try:
            model.save(output, overwrite=force)
        except (BaselineError, OSError) as exc:
            raise click.ClickException(f"{output}: cannot write the baseline ({exc})") from None
    for w in warnings:
        click.echo(f"warning: {w}", err=True)
    print_summary(model, output)
    click.echo(f"  spark: {time.perf_counter() - t0:.1f} s", err=True)


@spark_group.command("score")
@click.argument("paths", nargs=-1, required=True, type=UserPath())
@baseline_option(required=True, help_text="Baseline directory.")
@click.option("-o", "--output", required=True, type=UserPath(),
              help="Output directory (Parquet, partitioned by date and verdict).")
@_spark_options
def spark_score(paths: tuple[str, ...], baseline_dir: str, output: str, master: str | None, driver_memory: str,
                input_format: str | None, split_mb: float, confs: tuple[str, ...]) -> None:
    """Score PATHS against a baseline with Spark; writes Parquet partitioned by date and verdict."""
    from tlsdetect.detect.baseline_dir import BaselineError
    from tlsdetect.readers.inputs import InputError

    t0 = time.perf_counter()
    with _session(master, driver_memory, confs) as spark:
        from tlsdetect.spark import read_connections, score_connections, write_scored

        warnings: list[str] = []
        try:
            df = read_connections(spark, list(paths), input_format=input_format,
                                  split_bytes=int(split_mb * 1024 * 1024), warnings=warnings)
            write_scored(score_connections(spark, df, baseline_dir), output)
        except (InputError, BaselineError) as exc:
            raise click.ClickException(str(exc)) from None
        counts = spark.read.parquet(output).groupBy("verdict").count().collect()
    for w in warnings:
        click.echo(f"warning: {w}", err=True)
    by = {r["verdict"]: int(r["count"]) for r in counts}
    total = sum(by.values())
    click.echo(f"{total} connections: {by.get('intercepted', 0)} intercepted, {by.get('suspicious', 0)} suspicious, "
               f"{by.get('ok', 0)} ok; written to {output} ({time.perf_counter() - t0:.1f} s)", err=True)
