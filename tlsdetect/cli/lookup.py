"""``tlsdetect lookup``: what the knowledge base and a baseline say about one JA3, JA3N or JA4."""

from __future__ import annotations

import json

import click

from tlsdetect.cli.common import baseline_option, user_errors


@click.command()
@click.argument("fingerprint_value", metavar="FINGERPRINT")
@baseline_option(required=False, help_text="Baseline directory (else knowledge only).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text (always the long form).")
@click.option("--verbose", is_flag=True,
              help="Long form: a TLS stack's whole version string and every source (else name, version, first source).")
def lookup(fingerprint_value: str, baseline_dir: str | None, as_json: bool, verbose: bool) -> None:
    """What is known about one JA3, JA3N or JA4: products, applications, stacks, clients, prevalence."""
    from tlsdetect.detect.baseline import Baseline
    from tlsdetect.detect.lookup import FingerprintShapeError, describe

    with user_errors():
        model = Baseline.load(baseline_dir) if baseline_dir else None
    try:
        info = describe(fingerprint_value, model, verbose=verbose or as_json)
    except FingerprintShapeError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
        return
    click.echo(f"{info['fingerprint']} ({info['kind']}): verdict {info['verdict']}")
    for line in info["why"]:
        click.echo(f"  - {line}")
