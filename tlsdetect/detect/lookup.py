"""What is known about one fingerprint: the answer of ``tlsdetect lookup`` and ``GET /v1/fingerprints``.

The kind is told by shape: a JA4 is ``[tqd]VVsCCEEaa_hhhhhhhhhhhh_hhhhhhhhhhhh``; 32 hex digits are
an MD5, looked up as both JA3 and JA3N (the two cannot be told apart by shape). The verdict of a
fingerprint alone is ``intercepted`` when it is a known interception product's, ``suspicious`` when
only its shape and cipher list match one, ``ok`` when the baseline population or a known
application/stack uses it, and ``unknown`` when nothing is known: a fingerprint by itself is not
evidence of interception, the connection's client and context are.

A JA4 with no exact match is compared as a stack (:mod:`~tlsdetect.detect.ja4_parts`): one that differs
only in the connection's SNI flag is the known stack's (``ok``); one whose JA4_ab (JA4_a without the SNI
flag, JA4_b) is a known stack's or baseline client's says so, and that a source keeping GREASE in the
signature algorithms (Envoy <= 1.40) gives another JA4_c; its verdict stays as the exact match left it.
"""

from __future__ import annotations

import math
import re
from typing import Any

import pandas as pd

from tlsdetect.detect.baseline import Baseline
from tlsdetect.detect.ja4_parts import JA4_SHAPE, ja4_parts
from tlsdetect.detect.knowledge import Knowledge, load_knowledge

__all__ = ["JA4_SHAPE", "FingerprintShapeError", "describe", "kind_of", "short_release", "short_sources",
           "similar_ja4"]
_MD5 = re.compile(r"^[0-9a-f]{32}$")
#: The first version number of a stack's self-description (``curl 7.88.1 (x86_64...) libcurl/...`` -> 7.88.1).
_VERSION = re.compile(r"(?<![\w.])v?(\d+(?:\.\d+)+)")


class FingerprintShapeError(ValueError):
    """The value is not a JA3, JA3N or JA4 by shape."""


def kind_of(value: str) -> tuple[str, ...]:
    """The fingerprint kinds ``value`` may be: ``("ja4",)`` or ``("ja3", "ja3n")``."""
    v = value.strip().lower()
    if JA4_SHAPE.match(v):
        return ("ja4",)
    if _MD5.match(v):
        return ("ja3", "ja3n")
    raise FingerprintShapeError(
        f"{value[:80]!r} is not a fingerprint: expected a JA4 (t13d1516h2_8daaf6152771_02713d6af862) "
        "or a JA3/JA3N (32 hex digits)"
    )


def short_release(stack: str, version: str) -> str:
    """``stack`` and the first version number of its description (``curl 7.88.1``): the knowledge base keeps
    the whole ``--version`` output of the tool that made the capture, hundreds of characters of build flags."""
    m = _VERSION.search(version)
    return f"{stack} {m.group(1)}" if m else stack


def short_sources(sources: str) -> str:
    """The first of ``; ``-separated sources and how many more (the full list is in the JSON answer)."""
    parts = [p for p in (s.strip() for s in sources.split("; ")) if p]
    if len(parts) <= 1:
        return sources
    return f"{parts[0]} (+{len(parts) - 1} more)"


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for rec in df.to_dict("records"):
        out.append({str(k): (None if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))
                             else v.isoformat() if isinstance(v, pd.Timestamp) else v) for k, v in rec.items()})
    return out


def similar_ja4(value: str, baseline: Baseline | None, kb: Knowledge) -> pd.DataFrame:
    """Known JA4s (knowledge base applications and stacks, baseline clients) of ``value``'s stack or JA4_ab
    but not ``value`` itself: ``name``, ``value``, ``match`` (``stack``: only the SNI flag differs, else
    ``ja4_ab``) and ``source``."""
    known = [kb.applications.assign(name=kb.applications["application"])[["name", "kind", "value", "source"]],
             kb.stacks.assign(name=kb.stacks["stack"])[["name", "kind", "value", "source"]]]
    if baseline is not None:
        fp = baseline.fingerprints_
        known.append(pd.DataFrame({"name": "baseline client " + fp["client_id"].astype(str), "kind": fp["kind"],
                                   "value": fp["value"], "source": "baseline"}))
    cands = pd.concat(known, ignore_index=True)
    cands = cands[(cands["kind"] == "ja4") & (cands["value"] != value)].reset_index(drop=True)
    mine = ja4_parts(pd.Series([value], dtype="string")).iloc[0]
    if pd.isna(mine["ab"]) or len(cands) == 0:
        return pd.DataFrame(columns=["name", "value", "match", "source"])
    parts = ja4_parts(cands["value"].astype("string"))
    same_ab = (parts["ab"] == mine["ab"]).fillna(False).to_numpy(dtype=bool)
    out = cands[same_ab].assign(match=((parts["stack"] == mine["stack"]).fillna(False).to_numpy(dtype=bool)[same_ab]))
    out["match"] = out["match"].map({True: "stack", False: "ja4_ab"})
    found: pd.DataFrame = out[["name", "value", "match", "source"]].drop_duplicates(["name", "value"])
    return found.reset_index(drop=True)


def describe(value: str, baseline: Baseline | None, kb: Knowledge | None = None, *,
             top_clients: int = 10, verbose: bool = True) -> dict[str, Any]:
    """Verdict, known products and applications, prevalence and clients of one fingerprint, and why.

    ``verbose=False`` words ``why`` for a terminal: a TLS stack as its name and version number, a list of
    sources as the first one and a count (``tlsdetect lookup`` without ``--verbose``); the JSON answer and
    the API keep the long form.
    """
    kb = kb or load_knowledge()
    v = value.strip().lower()
    kinds = kind_of(v)
    why: list[str] = []
    pf = kb.product_fingerprints
    products = pf[pf["kind"].isin(kinds) & (pf["value"] == v)]
    partial = pd.DataFrame(columns=pf.columns)
    if kinds == ("ja4",) and len(products) == 0:
        from tlsdetect.detect.knowledge import match_fingerprints

        m = match_fingerprints(pd.Series([v], dtype="string"), "ja4", kb)
        if m["product"].notna().iloc[0]:
            partial = m.assign(kind="ja4_ab", value=v)[["product", "product_type", "source", "kind", "value"]]
    apps = kb.applications[kb.applications["kind"].isin(kinds) & (kb.applications["value"] == v)]
    stacks = kb.stacks[kb.stacks["kind"].isin(kinds) & (kb.stacks["value"] == v)]
    prevalence: dict[str, Any] | None = None
    clients: list[dict[str, Any]] = []
    if baseline is not None:
        fp = baseline.fingerprints_[baseline.fingerprints_["kind"].isin(kinds) & (baseline.fingerprints_["value"] == v)]
        if len(fp):
            prevalence = {
                "kind": str(fp["kind"].iloc[0]),
                "connections": int(fp["count"].sum()),
                "clients": int(fp["client_id"].nunique()),
                "share_of_connections": round(float(fp["count"].sum()) / max(baseline.n_connections_, 1), 6),
                "first_seen": fp["first_seen"].min(),
                "last_seen": fp["last_seen"].max(),
            }
            prevalence = _records(pd.DataFrame([prevalence]))[0]
            top = fp.sort_values("count", ascending=False).head(top_clients)
            clients = _records(top[["client_id", "count", "first_seen", "last_seen"]])
            fams = baseline.fp_families_[baseline.fp_families_["kind"].isin(kinds)
                                         & (baseline.fp_families_["value"] == v)]
            if len(fams):
                why.append("User-Agent families sending it in the baseline: "
                           + ", ".join(f"{r['ua_family']} ({r['count']})" for r in fams.to_dict("records")))
    similar = (similar_ja4(v, baseline, kb) if kinds == ("ja4",) and prevalence is None and not len(apps)
               and not len(stacks) else pd.DataFrame(columns=["name", "value", "match", "source"]))
    for match, text in (("stack", "the JA4 of {names} with the other SNI flag (d: an SNI was sent, i: none, as to "
                                  "an IP literal); the SNI flag is the connection's, not the stack's"),
                        ("ja4_ab", "JA4_ab of {names}; JA4_c differs: a source that keeps GREASE in signature "
                                   "algorithms (Envoy <= 1.40) gives another JA4_c, per connection for "
                                   "Chromium >= 152")):
        sub = similar[similar["match"] == match]
        if len(sub):
            names = ", ".join(dict.fromkeys(sub["name"].astype(str).head(5)))
            more = sub["name"].nunique() - min(sub["name"].nunique(), 5)
            why.append(text.format(names=names + (f" (+{more} more)" if more > 0 else "")))
    if len(products):
        verdict = "intercepted"
        for r in products.to_dict("records"):
            why.append(f"{str(r['kind']).upper()} of {r['product']} ({r['product_type']}); source: {r['source']}")
    elif len(partial):
        verdict = "suspicious"
        for r in partial.to_dict("records"):
            why.append(f"shape and cipher list match {r['product']} ({r['product_type']}); source: {r['source']}; "
                       "fields that source lacks were not compared")
    elif prevalence is not None or len(apps) or len(stacks):
        verdict = "ok"
    elif len(similar) and (similar["match"] == "stack").any():
        verdict = "ok"  # the known stack's JA4 with the other SNI flag: a property of the connection
    elif len(similar):
        verdict = "unknown"
        why.append("no exact match in the knowledge base" + (" or the baseline" if baseline is not None else ""))
    else:
        verdict = "unknown"
        why.append("not in the baseline and not in the knowledge base: judge it by the connection's client"
                   if baseline is not None else "not in the knowledge base (no baseline given)")
    if prevalence is not None:
        why.append(f"seen in the baseline on {prevalence['connections']} connection(s) from "
                   f"{prevalence['clients']} client(s), {prevalence['first_seen']} .. {prevalence['last_seen']}")
    elif baseline is not None:
        why.append("never seen in the baseline")
    for r in apps.to_dict("records"):
        why.append(f"{str(r['kind']).upper()} of the application {r['application']} ({r['family']}); "
                   f"source: {r['source']}")
    for r in stacks.to_dict("records"):
        if verbose:
            why.append(f"{str(r['kind']).upper()} of the TLS stack {r['stack']} {r['version']}; source: {r['source']}")
        else:
            why.append(f"{str(r['kind']).upper()} of the TLS stack {short_release(str(r['stack']), str(r['version']))}"
                       f"; source: {short_sources(str(r['source']))}")
    return {
        "fingerprint": v,
        "kind": "/".join(kinds),
        "verdict": verdict,
        "known_products": _records(pd.concat([products, partial])[["product", "product_type", "kind", "source"]]),
        "applications": _records(apps[["application", "family", "kind", "source"]]),
        "stacks": _records(stacks[["stack", "version", "kind", "source"]]),
        "prevalence": prevalence,
        "clients": clients,
        "similar": _records(similar),
        "why": why,
    }
