"""The ``tlsdetect`` command: the group, and the command groups registered on it.

Each command group lives in its own module (what they share is in :mod:`tlsdetect.cli.common`);
none of them imports this one. The modules import only click at start-up, so ``tlsdetect --help``
does not pay for pandas, scikit-learn or PyArrow: a command imports what it needs when it runs.

Errors a user can cause (a file that is not a capture, a missing tool) end in one line on
stderr and a non-zero exit; damage inside a capture is a warning that says where, after the
readable part has been used.
"""

from __future__ import annotations

import logging
import sys

import click

from tlsdetect import __version__
from tlsdetect.cli import baseline, fingerprint, lookup, pins, score, serve, spark, stream

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tlsdetect")
@click.option("-v", "--verbose", is_flag=True, help="Log what the readers do.")
def main(verbose: bool) -> None:
    """Detect TLS interception from ClientHello fingerprints and certificate issuers."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.ERROR,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


# the modules are imported, not their commands: a command named like its module would hide the module
# from ``import tlsdetect.cli.serve as m`` (which looks the name up on this package)
main.add_command(fingerprint.fingerprint)
main.add_command(baseline.baseline)
main.add_command(score.score_cmd)
main.add_command(lookup.lookup)
main.add_command(serve.serve)
main.add_command(stream.stream)
main.add_command(spark.spark_group)
main.add_command(pins.pins_group)

if __name__ == "__main__":
    main()
