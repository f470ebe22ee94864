"""Population signals: the hello model's outliers, weak ciphers, and a User-Agent whose family does not
send this hello (families from the baseline, FoxIO, salesforce and the project's own stacks).

``model_outlier`` is a supporting signal (see :mod:`~tlsdetect.detect.evidence`): every client or service
the baseline never saw is an outlier (Envoy's own upstream connections were 48 of 48 ``suspicious`` through
it alone), so it adds to other evidence and counts by itself only when the hello is also unlike every clean
stack the knowledge base knows and nearer to an interception product's hello than to any of them
(:func:`product_like`).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from tlsdetect.detect.baseline import Baseline
from tlsdetect.detect.columns import Unique, pair_in, positions, texts_at
from tlsdetect.detect.derived import derived
from tlsdetect.detect.evidence import Evidence
from tlsdetect.detect.features import has_grease, weak_cipher_count
from tlsdetect.detect.knowledge import Knowledge
from tlsdetect.detect.product_resemblance import nearest_products
from tlsdetect.detect.useragent import family_of_stack

__all__ = ["BROWSERS", "model_signal", "product_like", "ua_signals"]

BROWSERS = frozenset({"chromium", "firefox", "safari"})


def product_like(ja3_full: pd.Series, rows: npt.NDArray[np.bool_], kb: Knowledge,
                 threshold: float) -> npt.NDArray[np.bool_]:
    """Of ``rows``: those whose hello is farther than ``threshold`` from every clean stack hello of ``kb`` and
    nearer to a distinctive interception product's hello than to any of them (each distinct JA3 text once)."""
    out = np.zeros(len(ja3_full), dtype=bool)
    if not rows.any():
        return out
    u = Unique(ja3_full[rows].reset_index(drop=True))
    if len(u.values) == 0:
        return out
    near = nearest_products(u.values, kb)
    d_product = near["distance"].to_numpy(dtype=np.float64)
    d_clean = near["clean_distance"].to_numpy(dtype=np.float64)
    like = (d_clean > threshold) & (d_product < d_clean)  # NaN (no product, malformed text) compares False
    out[rows] = u.rows(like)
    return out


def _population_weak(b: Baseline) -> int:
    """Weak cipher offers over the baseline's distinct hellos (counted once per baseline)."""
    return derived(b, "population_signals.weak", ("hellos_",),
                   lambda: int(weak_cipher_count(b.hellos_).sum()) if len(b.hellos_) else 0)


def model_signal(codes: npt.NDArray[np.int64], hellos: pd.DataFrame, b: Baseline, ev: Evidence,
                 ja3_full: pd.Series | None = None, kb: Knowledge | None = None) -> None:
    """``model_outlier`` (supporting; alone where :func:`product_like`, given ``ja3_full`` and ``kb``) and
    ``weak_ciphers`` where the population never offered any."""
    if len(hellos) == 0:
        return
    if b.model_ is not None:
        dist, nearest = b.model_.distances(hellos)
        row_d = np.where(codes >= 0, dist[np.maximum(codes, 0)], np.nan)
        out = np.nan_to_num(row_d, nan=0.0) > b.novelty_threshold
        labels = np.array([*b.model_.labels, ""], dtype=object)
        near = labels[np.where(codes >= 0, nearest[np.maximum(codes, 0)], -1)]
        shared = np.round(100 * (1 - np.nan_to_num(row_d, nan=1.0))).astype(int)
        usual = f"{100 * (1 - b.novelty_threshold):.0f}"
        alone = (product_like(ja3_full, out, kb, b.novelty_threshold) if ja3_full is not None and kb is not None
                 else np.zeros(len(out), dtype=bool))
        ev.add("model_outlier", out,
               lambda i: ("the closest ClientHello the baseline population sent (" + texts_at(near, i)
                          + ") shares only "
                          + texts_at(shared, i) + f"% of this hello's values; at least {usual}% is usual"
                          + np.where(alone[i], "; it is unlike every clean stack known and nearer to an "
                                     "interception product's hello", "")),
               expected=f"a hello within Jaccard distance {b.novelty_threshold} of a known one",
               observed=np.round(row_d, 3), alone=alone)
    weak = weak_cipher_count(hellos)
    pop_weak = _population_weak(b)
    if pop_weak == 0:
        row_weak = np.where(codes >= 0, weak[np.maximum(codes, 0)], 0)
        ev.add("weak_ciphers", row_weak > 0,
               lambda i: ("the hello offers " + texts_at(row_weak, i)
                          + " weak cipher(s) (NULL, anon, export, RC4 or DES); "
                          "no hello in the baseline offered any"),
               expected="no weak ciphers", observed=row_weak)


_FAMILY_TABLES: weakref.WeakKeyDictionary[Any, dict[Any, Any]] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class _FamilyTable:
    values: pd.Index
    families: pd.Index
    pair_values: npt.NDArray[np.int64]
    pair_families: npt.NDArray[np.int64]
    expected: npt.NDArray[np.object_]  # per value: the families that send it, as text


def _family_tables(b: Baseline | None, kb: Knowledge) -> dict[str, _FamilyTable]:
    """Per fingerprint kind: which stack families send each value (baseline, FoxIO, salesforce, own stacks).

    Built once per (baseline, knowledge) pair and kept while both live: a stream scores many small
    batches against the same two.
    """
    per_kb = _FAMILY_TABLES.setdefault(kb, {})
    key = id(b) if b is not None else None
    if key in per_kb and per_kb[key][0] is b:
        return per_kb[key][1]  # type: ignore[no-any-return]
    pairs: list[pd.DataFrame] = []
    if b is not None and len(b.fp_families_):
        pairs.append(b.fp_families_[["kind", "value", "ua_family"]].rename(columns={"ua_family": "family"}))
    apps = kb.applications.assign(family=kb.applications["family"].astype("string"))
    pairs.append(apps[["kind", "value", "family"]])
    stacks = kb.stacks.assign(family=kb.stacks["stack"].map(family_of_stack).astype("string"))
    pairs.append(stacks[["kind", "value", "family"]])
    known = pd.concat(pairs, ignore_index=True).dropna()
    known = known[known["family"] != "other"]
    out: dict[str, _FamilyTable] = {}
    for kind in ("ja4", "ja3n", "ja3"):
        sub = known[known["kind"] == kind].drop_duplicates(["value", "family"])
        if len(sub) == 0:
            continue
        joined = sub.groupby("value", observed=True)["family"].agg(lambda s: ", ".join(sorted(set(s))))
        vals, fams = pd.Index(sub["value"].unique()), pd.Index(sub["family"].unique())
        out[kind] = _FamilyTable(vals, fams, np.asarray(vals.get_indexer(pd.Index(sub["value"])), dtype=np.int64),
                                 np.asarray(fams.get_indexer(pd.Index(sub["family"])), dtype=np.int64),
                                 joined.reindex(vals).to_numpy(dtype=object))
    per_kb.clear()  # one baseline at a time per knowledge base: a reloaded baseline replaces the old entry
    per_kb[key] = (b, out)
    return out


def ua_signals(df: pd.DataFrame, b: Baseline | None, kb: Knowledge, ja4: pd.Series, ja3n: pd.Series,
                ja3: pd.Series, uaf: pd.Series, codes: npt.NDArray[np.int64], hellos: pd.DataFrame,
                ev: Evidence) -> None:
    """User-Agent family vs the families known to send this fingerprint; Chromium without GREASE."""
    if uaf.isna().all():
        return
    n = len(df)
    tables = _family_tables(b, kb)
    mismatch = np.zeros(n, dtype=bool)
    decided = np.zeros(n, dtype=bool)
    expected = np.full(n, None, dtype=object)
    for kind, values in (("ja4", ja4), ("ja3n", ja3n), ("ja3", ja3)):
        if kind not in tables or values.isna().all():
            continue
        t = tables[kind]
        pos = positions(values, t.values)
        f = positions(uaf, t.families)
        has = (pos >= 0) & ~decided & uaf.notna().to_numpy()
        ok = pair_in(pos, f, t.pair_values, t.pair_families, len(t.families))
        bad = has & ~ok
        mismatch |= bad
        decided |= has
        exp_text = t.expected
        expected[bad] = exp_text[pos[bad]]
    ev.add("ua_fingerprint_mismatch", mismatch,
           lambda i: ("the User-Agent claims " + texts_at(uaf, i) + " but the hello is one that "
                      + texts_at(expected, i)
                      + " sends"),
           expected=expected, observed=uaf)

    if len(hellos):
        grease = has_grease(hellos)
        no_grease = (codes >= 0) & ~grease[np.maximum(codes, 0)] & (uaf == "chromium").fillna(False).to_numpy()
        ev.add("browser_without_grease", no_grease,
               "the User-Agent claims Chromium, which puts GREASE values in every ClientHello; this hello has none",
               expected="GREASE in ciphers, extensions and groups", observed="no GREASE")
        weak = weak_cipher_count(hellos)
        row_weak = np.where(codes >= 0, weak[np.maximum(codes, 0)], 0)
        browser = uaf.isin(list(BROWSERS)).fillna(False).to_numpy()
        # where the population never offered weak ciphers, the model signal already said so
        population_weak = b is None or _population_weak(b) > 0
        ev.add("weak_ciphers", (row_weak > 0) & browser & population_weak,
               lambda i: ("the User-Agent claims a current browser, which offers no weak ciphers; this hello offers "
                          + texts_at(row_weak, i)),
               expected="no NULL, anon, export, RC4 or DES ciphers", observed=row_weak)
