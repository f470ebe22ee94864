"""Envoy's pins: ``verify_certificate_spki`` and ``verify_certificate_hash`` in bootstrap or cluster YAML.

Both live in a ``CertificateValidationContext`` (Envoy 1.40, ``envoy.extensions.transport_sockets.tls.v3``),
reached from ``CommonTlsContext.validation_context`` or
``CommonTlsContext.combined_validation_context.default_validation_context`` of an
``UpstreamTlsContext`` (Envoy as client) or a ``DownstreamTlsContext`` (Envoy as server, where the
pins apply to *client* certificates: noted), or from an SDS ``Secret``'s ``validation_context``.
Envoy checks them against the peer's leaf only: ``verify_certificate_spki`` (base64 SPKI SHA-256)
is kind ``leaf``; ``verify_certificate_hash`` hashes the whole DER certificate (hex, colons
optional), kind ``cert``, stored as 64 lowercase hex digits.

The domain is the nearest ``sni`` of the enclosing ``UpstreamTlsContext`` or the
``filter_chain_match.server_names`` of the enclosing filter chain (``*.x`` is ``x`` with
subdomains); a context with neither applies to every host it talks to: domain ``""`` with
include_subdomains. Envoy has no expiry and cannot mark a backup.
"""

from __future__ import annotations

from tlsdetect.pins.rows import Collected, PolicyError, hex_hash, normalise_domain
from tlsdetect.pins.yamltree import Y, load

FORMAT = "envoy"
PIN_FIELDS = {"verify_certificate_spki": "leaf", "verify_certificate_hash": "cert"}


def _names(ancestors: list[Y], path: str) -> tuple[list[tuple[str, bool]], bool]:
    """The (domain, include_subdomains) a context applies to, and whether it is a downstream one."""
    downstream = False
    for node in reversed(ancestors):
        typ = node.get("@type")
        if typ is not None and isinstance(typ.value, str) and typ.value.endswith("DownstreamTlsContext"):
            downstream = True
        sni = node.get("sni")
        if sni is not None and isinstance(sni.value, str) and sni.value.strip():
            return [(normalise_domain(sni.value, path, sni.line), False)], downstream
        match = node.get("filter_chain_match")
        names = match.get("server_names") if match is not None else None
        if names is not None and names.seq():
            out = []
            for n in names.seq():
                if not isinstance(n.value, str):
                    raise PolicyError(path, n.line, "a server_names entry must be a string")
                text = n.value.strip()
                wild = text.startswith("*.")
                out.append((normalise_domain(text[2:] if wild else text, path, n.line), wild))
            return out, True
    return [("", True)], downstream


def _context(ctx: Y, ancestors: list[Y], path: str, out: Collected) -> None:
    names, downstream = _names(ancestors, path)
    for field, kind in PIN_FIELDS.items():
        values = ctx.get(field)
        if values is None:
            continue
        if not isinstance(values.value, list):
            raise PolicyError(path, values.line, f"{field} must be a list of strings")
        for v in values.seq():
            if not isinstance(v.value, str):
                raise PolicyError(path, v.line, f"a {field} entry must be a string")
            pin = hex_hash(v.value) if kind == "cert" else v.value.strip()
            for name, subs in names:
                out.pin(name, subs, pin, kind, None, None, path, v.line, FORMAT)
    if downstream:
        out.note(path, ctx.line, names[0][0], "client_pins",
                 "pins in a DownstreamTlsContext check client certificates, not servers")


def _walk(node: Y, ancestors: list[Y], path: str, out: Collected) -> None:
    if isinstance(node.value, dict):
        if any(f in node.value for f in PIN_FIELDS):
            _context(node, ancestors, path, out)
        for _, child in node.items():
            _walk(child, [*ancestors, node], path, out)
    elif isinstance(node.value, list):
        for child in node.seq():
            _walk(child, [*ancestors, node], path, out)


def read(path: str, data: bytes) -> Collected:
    """Every pin of every validation context in an Envoy YAML or JSON file."""
    root = load(path, data)
    out = Collected()
    _walk(root, [], path, out)
    if not out.rows:
        raise PolicyError(path, None, "no verify_certificate_spki or verify_certificate_hash in a mapping")
    return out
