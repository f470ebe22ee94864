"""``--pins POLICY`` and ``--issuer-policy FILE`` of ``score``, ``stream`` and ``serve``: report-only policies.

Loaded once at start into a :class:`tlsdetect.detect.pin_signals.Policies` that scoring takes, so
the three commands flag the same connections ``pins check`` names. A policy that does not read is
one line and exit status 2, before any traffic is read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from tlsdetect.cli.common import UserPath

if TYPE_CHECKING:
    from tlsdetect.detect.pin_signals import Policies

__all__ = ["load_policies", "policy_options"]

F = TypeVar("F", bound=Callable[..., Any])


class BadPolicy(click.ClickException):
    exit_code = 2


def policy_options(f: F) -> F:
    """``--pins`` and ``--issuer-policy`` (both repeatable)."""
    f = click.option("--issuer-policy", "issuer_policy", multiple=True, type=UserPath(exists=True, dir_okay=False),
                     help="Issuer rules (tlsdetect-issuers 1): a name's certificate from an issuer the rules do "
                          "not allow is an issuer_policy_violation.")(f)
    return click.option("--pins", "pins", multiple=True, type=UserPath(exists=True, dir_okay=False),
                        help="Pin sets (Android network_security_config.xml, iOS Info.plist, TrustKit/OkHttp, "
                             "Envoy YAML, tlsdetect-pins): a pinned name answered with a chain none of its pins "
                             "is in is a pin_violation. Repeatable.")(f)


def load_policies(pins: tuple[str, ...], issuer_policy: tuple[str, ...]) -> Policies | None:
    """The policies of the two options (None when neither is given); one-line errors."""
    if not pins and not issuer_policy:
        return None
    from tlsdetect.detect.pin_signals import Policies
    from tlsdetect.pins.issuer_policy import read_issuer_policy
    from tlsdetect.pins.policy import PolicyError, read_policies

    try:
        kw: dict[str, Any] = {}
        if pins:
            kw["pins"] = read_policies(pins)
        if issuer_policy:
            kw["issuers"] = read_issuer_policy(list(issuer_policy))
    except PolicyError as exc:
        raise BadPolicy(str(exc)) from None
    return Policies(**kw)
