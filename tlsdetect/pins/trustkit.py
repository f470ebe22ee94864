"""TrustKit and OkHttp pin sets written as JSON or YAML (the same tree either way).

Neither library has a file format of its own (TrustKit reads a dictionary, usually from Info.plist;
OkHttp a ``CertificatePinner.Builder`` in code), so this is the documented shape a build writes::

    TSKConfiguration:            # optional wrapper, as in Info.plist
      TSKPinnedDomains:
        example.com:
          TSKIncludeSubdomains: true
          TSKEnforcePinning: false        # report-only: noted, pins still read
          TSKExpirationDate: "2027-06-30"
          TSKPublicKeyHashes: [<base64>, <base64>]
    okhttp:
      - pattern: "**.example.com"         # CertificatePinner.Builder().add(pattern, pins...)
        pins: ["sha256/<base64>", "sha256/<base64>"]

TrustKit and OkHttp both accept a pin that matches any certificate of the chain: kind ``any``.
OkHttp's ``*.x`` (one label) and ``**.x`` (any depth and ``x`` itself) both become domain ``x``
with include_subdomains (``*.`` is widened: it would not cover ``x`` nor ``a.b.x``). OkHttp
``sha1/`` pins are refused: a SHA-1 hash cannot be compared with the SHA-256 ones.
"""

from __future__ import annotations

from tlsdetect.pins.rows import Collected, PolicyError, normalise_domain, parse_date, strip_sha256
from tlsdetect.pins.yamltree import Y, load

TSK_KEYS = frozenset({"TSKIncludeSubdomains", "TSKEnforcePinning", "TSKExpirationDate", "TSKPublicKeyHashes",
                      "TSKReportUris", "TSKDisableDefaultReportUri", "TSKPublicKeyAlgorithms",
                      "TSKExcludeSubdomainFromParentPolicy"})


def _bool(node: Y | None, default: bool, path: str, what: str) -> bool:
    if node is None:
        return default
    if not isinstance(node.value, bool):
        raise PolicyError(path, node.line, f"{what} must be true or false")
    return node.value


def read_domains(domains: Y, path: str, out: Collected) -> None:
    """The rows of a ``TSKPinnedDomains`` tree (also used for TrustKit inside an Info.plist)."""
    if not isinstance(domains.value, dict):
        raise PolicyError(path, domains.line, "TSKPinnedDomains must map domain names to settings")
    for raw, conf in domains.items():
        name = normalise_domain(raw, path, conf.line)
        if not isinstance(conf.value, dict):
            raise PolicyError(path, conf.line, f"settings of {name} must be a mapping")
        unknown = sorted(set(conf.value) - TSK_KEYS)
        if unknown:
            raise PolicyError(path, conf.value[unknown[0]].line, f"unknown TrustKit key {unknown[0][:60]!r} for {name}")
        subs = _bool(conf.get("TSKIncludeSubdomains"), False, path, "TSKIncludeSubdomains")
        expiry_node = conf.get("TSKExpirationDate")
        expiry = parse_date(expiry_node.value, path, expiry_node.line) if expiry_node else None
        if _bool(conf.get("TSKExcludeSubdomainFromParentPolicy"), False, path, "TSKExcludeSubdomainFromParentPolicy"):
            out.pin(name, subs, None, None, expiry, None, path, conf.line, "trustkit")
            continue
        if not _bool(conf.get("TSKEnforcePinning"), True, path, "TSKEnforcePinning"):
            out.note(path, conf.line, name, "report_only",
                     "TSKEnforcePinning is false: pins are reported, not enforced")
        hashes = conf.get("TSKPublicKeyHashes")
        if hashes is None or not isinstance(hashes.value, list):
            raise PolicyError(path, conf.line, f"{name} has no TSKPublicKeyHashes list")
        for h in hashes.seq():
            if not isinstance(h.value, str):
                raise PolicyError(path, h.line, "a TSKPublicKeyHashes entry must be a string")
            out.pin(name, subs, h.value.strip(), "any", expiry, None, path, h.line, "trustkit")
        if not hashes.seq():
            out.pin(name, subs, None, None, expiry, None, path, hashes.line, "trustkit")


def _okhttp(entries: Y, path: str, out: Collected) -> None:
    if not isinstance(entries.value, list):
        raise PolicyError(path, entries.line, "okhttp must be a list of {pattern, pins}")
    for entry in entries.seq():
        pattern, pins = entry.get("pattern"), entry.get("pins")
        if pattern is None or not isinstance(pattern.value, str) or pins is None or not isinstance(pins.value, list):
            raise PolicyError(path, entry.line, "each okhttp entry needs 'pattern' (a string) and 'pins' (a list)")
        text = pattern.value.strip()
        subs = text.startswith(("*.", "**."))
        name = normalise_domain(text.split(".", 1)[1] if subs else text, path, pattern.line)
        for p in pins.seq():
            if not isinstance(p.value, str):
                raise PolicyError(path, p.line, "a pin must be a string 'sha256/<base64>'")
            if p.value.strip().lower().startswith("sha1/"):
                raise PolicyError(path, p.line, "sha1/ pins are not read: a SHA-1 hash cannot be compared with SHA-256")
            if not p.value.strip().lower().startswith("sha256/"):
                raise PolicyError(path, p.line, "an OkHttp pin starts with 'sha256/'")
            out.pin(name, subs, strip_sha256(p.value), "any", None, None, path, p.line, "okhttp")


def read(path: str, data: bytes) -> Collected:
    """The rows of a TrustKit/OkHttp JSON or YAML file."""
    root = load(path, data)
    if not isinstance(root.value, dict):
        raise PolicyError(path, root.line, "expected a mapping with TSKPinnedDomains or okhttp")
    conf = root.get("TSKConfiguration") or root
    out = Collected()
    domains, okhttp = conf.get("TSKPinnedDomains"), root.get("okhttp")
    if domains is None and okhttp is None:
        raise PolicyError(path, root.line, "neither TSKPinnedDomains nor okhttp found")
    if domains is not None:
        read_domains(domains, path, out)
    if okhttp is not None:
        _okhttp(okhttp, path, out)
    return out
