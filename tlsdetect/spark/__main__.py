"""``python -m tlsdetect.spark fit|score ...`` and the file to hand to ``spark-submit`` (see the package docstring)."""

from __future__ import annotations

from tlsdetect.cli.spark import spark_group

if __name__ == "__main__":
    spark_group(prog_name="tlsdetect.spark")
