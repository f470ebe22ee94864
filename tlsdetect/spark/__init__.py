"""The tlsdetect pipeline as Apache Spark jobs: read captures and logs, fit a baseline, score, at cluster scale.

Install with the ``spark`` extra (``pip install 'tlsdetect[spark]'``, PySpark; Java 17). The same
readers, baseline and scoring code as the local CLI run inside Spark tasks, so the local and the
Spark paths give identical rows (``tests/test_spark.py`` checks it):

* :func:`read_connections` -- PATHs (files, directories, as the CLI takes them) to a DataFrame of
  the connections table (:mod:`tlsdetect.spark.schema`): one task per capture, Zeek ssl / Suricata
  EVE / Envoy logs split into line-aligned byte ranges (:mod:`tlsdetect.spark.read`);
* :func:`fit_baseline` -- the baseline tables as Spark aggregations; only the aggregates reach the
  driver, which saves the usual baseline directory (:mod:`tlsdetect.spark.fit`);
* :func:`score_connections` / :func:`write_scored` -- scoring with the baseline broadcast, written
  as Parquet partitioned by date and verdict (:mod:`tlsdetect.spark.score`).

Command line (``--master`` defaults to ``local[2]``, or to spark-submit's master under it)::

    tlsdetect spark fit captures/ zeek/ -o baseline/ --master local[2]
    tlsdetect spark score new/ --baseline baseline/ -o scored/ --master spark://head:7077

Every executor needs a Python with ``tlsdetect`` installed and the input paths mounted alike
(relative paths are made absolute on the driver). Started by these commands, the executors use
the driver's interpreter path (give another with ``--conf spark.pyspark.python=PATH`` or
``PYSPARK_PYTHON``). Under spark-submit, set ``PYSPARK_PYTHON`` (spark-submit's own rule) and
submit the module file::

    PYSPARK_PYTHON=/opt/tlsdetect/bin/python spark-submit --master yarn --executor-memory 2g \\
        $(python -c 'import tlsdetect.spark.__main__ as m; print(m.__file__)') \\
        score /data/pcaps --baseline /data/baseline -o /data/scored

``tests/test_spark_cluster.py`` runs both ways against a real standalone master and worker.

``python -m tlsdetect.spark fit|score ...`` is the same entry without spark-submit. The baseline
directory is written by the driver (its local filesystem); the scored Parquet by the executors
(give a path every node shares, or an ``hdfs://``/``s3a://`` URL).
"""

from __future__ import annotations

import os
import re
import sys
import warnings
from typing import Any

from tlsdetect.spark.fit import fit_baseline
from tlsdetect.spark.read import read_connections
from tlsdetect.spark.schema import connections_schema, scored_schema
from tlsdetect.spark.score import score_connections, write_scored

__all__ = [
    "connections_schema",
    "fit_baseline",
    "read_connections",
    "score_connections",
    "scored_schema",
    "session",
    "write_scored",
]

#: PySpark 4.3's warnings about pandas 3, which this package requires (pyproject.toml says why they
#: are ignored): (message, category, the module that warns in the Python workers).
PANDAS3_WARNINGS: tuple[tuple[str, type[Warning], str], ...] = (
    ("PySpark does not yet fully support pandas >= 3.0.0", FutureWarning, ""),
    ("The copy keyword is deprecated", DeprecationWarning, "pyspark.sql.pandas.types"),
)


def quiet_pandas3_warnings(conf: dict[str, str]) -> dict[str, str]:
    """Ignore :data:`PANDAS3_WARNINGS` from PySpark here, and return ``conf`` with the same for the workers.

    The driver filters any ``pyspark.*`` module. The workers get them as ``PYTHONWARNINGS``
    (``spark.executorEnv``), whose module field is one exact name: the FutureWarning is raised on
    behalf of some twenty PySpark modules, so its worker filter names none (its wording is PySpark's
    own); the copy keyword is pandas' wording, so that one names the module PySpark calls it from.
    A ``PYTHONWARNINGS`` already given (in ``conf``, else in the environment) comes after these and
    so takes precedence.
    """
    for message, category, _ in PANDAS3_WARNINGS:
        warnings.filterwarnings("ignore", message=re.escape(message), category=category, module=r"pyspark\.")
    key = "spark.executorEnv.PYTHONWARNINGS"
    ours = ",".join(f"ignore:{message}:{category.__name__}" + (f":{module}" if module else "")
                    for message, category, module in PANDAS3_WARNINGS)
    given = conf.get(key, os.environ.get("PYTHONWARNINGS", ""))
    return {**conf, key: ",".join(v for v in (ours, given) if v)}


def session(master: str | None = None, *, app_name: str = "tlsdetect", driver_memory: str | None = "2g",
            conf: dict[str, str] | None = None) -> Any:
    """A SparkSession for the jobs: UTC session time, Arrow batches of 50k rows.

    ``master`` None: spark-submit's master when run under it, else ``local[2]``. ``driver_memory``
    only applies when this call starts the JVM (not under spark-submit, which sets its own).
    PySpark's warnings that it does not yet support pandas 3 are ignored, on the driver and in
    the workers (:func:`quiet_pandas3_warnings`).
    """
    conf = quiet_pandas3_warnings(conf or {})
    from pyspark.sql import SparkSession

    under_submit = "PYSPARK_GATEWAY_PORT" in os.environ
    if not under_submit:
        # PySpark takes the executors' Python from PYSPARK_PYTHON only (spark-submit turns the
        # ``spark.pyspark.python`` setting into it; a session started here must do the same).
        # Default: this interpreter, whose environment has tlsdetect -- on a cluster, the same
        # path must hold a Python with tlsdetect on every node (or give the setting).
        chosen = conf.get("spark.pyspark.python")
        if chosen:
            os.environ["PYSPARK_PYTHON"] = chosen
        else:
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    if master is not None or not under_submit:
        builder = builder.master(master or "local[2]")
    if driver_memory and not under_submit:
        builder = builder.config("spark.driver.memory", driver_memory)
    local = not under_submit and (master or "local").startswith("local")
    settings = {
        # the aggregates are small: a few shuffle partitions, not Spark's 200 (override with conf)
        **({"spark.sql.shuffle.partitions": "8"} if local else {}),
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.execution.arrow.maxRecordsPerBatch": "50000",
        "spark.ui.showConsoleProgress": "false",
        **conf,
    }
    for k, v in settings.items():
        builder = builder.config(k, v)
    return builder.getOrCreate()
