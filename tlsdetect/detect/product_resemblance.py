"""Name an unknown build of a known interception product: the nearest product hello by offered values.

An exact fingerprint names only the builds the knowledge base has seen; a product's next build keeps most of
its cipher suites, extensions, groups and point formats. Each distinct JA3 text (``ja3_full``: the offered
values, GREASE removed) of a table is compared once with the knowledge base's product hellos and its clean
stack hellos (the Jaccard model of :class:`~tlsdetect.detect.features.HelloNovelty`, over the four lists every
source of product hellos carries: mitmengine records have no signature algorithms or supported versions).

Many products are built on the same libraries as clean software (an old OpenSSL client looks like half of the
2016 antivirus products), so a resemblance counts only when it is distinctive:

* the product hello is at least :data:`DISTINCT_FROM_CLEAN` from every clean stack hello (else it says
  nothing about interception), and
* the hello is within :data:`MAX_DISTANCE` of that product hello and nearer to it by :data:`MARGIN` than to
  any clean stack hello.

The thresholds were measured on the shared reference captures (see ``tests/test_detect_product_resemblance.py``
and the issue note): leave-one-capture-out, no clean row fires; the Sophos and Forcepoint captures, with their
own rows held out, are named after the nearest other product (bitdefender, avast) at 0.27 and 0.28.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from tlsdetect.detect.columns import Unique, codes_of, texts_at
from tlsdetect.detect.evidence import Evidence
from tlsdetect.detect.features import HelloNovelty
from tlsdetect.detect.knowledge import Knowledge

__all__ = ["DISTINCT_FROM_CLEAN", "MARGIN", "MAX_DISTANCE", "Resemblance", "hellos_of_ja3", "resemblance",
           "resemblance_signal"]

#: Largest Jaccard distance to a product hello that still names the product.
MAX_DISTANCE = 0.30
#: How much nearer the product hello must be than the nearest clean stack hello.
MARGIN = 0.05
#: A product hello this near a clean stack hello is not used (clean software sends the same values).
DISTINCT_FROM_CLEAN = 0.35
#: The knowledge kind that holds a hello's JA3 text (its offered values).
HELLO_KIND = "ja3_string"
_LISTS = ("ch_ciphers", "ch_extensions", "ch_groups", "ch_point_formats")


def hellos_of_ja3(texts: pd.Series) -> tuple[pd.DataFrame, npt.NDArray[np.bool_]]:
    """JA3 texts as hello-list columns (``ch_version`` and the four lists); and which texts were well formed.

    A malformed text (not five comma-separated fields of dash-separated numbers) gets empty lists and
    ``False``: it is counted, never compared.
    """
    out: dict[str, list[object]] = {c: [] for c in ("ch_version", *_LISTS)}
    ok = np.zeros(len(texts), dtype=bool)
    for r, text in enumerate(texts.astype(object).tolist()):
        fields = str(text).split(",") if isinstance(text, str) else []
        try:
            if len(fields) != 5:
                raise ValueError(text)
            version = int(fields[0])
            lists = [[int(v) for v in f.split("-") if v] for f in fields[1:]]
        except ValueError:
            version, lists = 0, [[], [], [], []]
        else:
            ok[r] = True
        out["ch_version"].append(version)
        for col, values in zip(_LISTS, lists, strict=True):
            out[col].append(values)
    return pd.DataFrame(out), ok


@dataclass(frozen=True)
class Resemblance:
    """The knowledge base's product and clean hellos, ready to compare (built once per knowledge base)."""

    products: pd.DataFrame  # product, product_type, source, nearest_clean (distinctive hellos only)
    product_model: HelloNovelty
    clean_model: HelloNovelty
    dropped: int  # product hellos too near a clean stack hello to mean anything


def _hello_rows(frame: pd.DataFrame) -> pd.DataFrame:
    rows = frame[frame["kind"] == HELLO_KIND].reset_index(drop=True)
    hellos, ok = hellos_of_ja3(rows["value"])
    return pd.concat([rows, hellos], axis=1)[ok].reset_index(drop=True)


def resemblance(kb: Knowledge) -> Resemblance:
    """The distinctive product hellos of ``kb`` and the two neighbour models (memoised on ``kb``)."""

    def build() -> Resemblance:
        products = _hello_rows(kb.product_fingerprints)
        clean = _hello_rows(kb.stacks)
        clean_model = HelloNovelty.fit(clean[["ch_version", *_LISTS]])
        nearest_clean, _ = clean_model.distances(products)
        keep = nearest_clean >= DISTINCT_FROM_CLEAN
        chosen = products[keep].reset_index(drop=True).assign(nearest_clean=nearest_clean[keep])
        return Resemblance(
            products=chosen[["product", "product_type", "source", "nearest_clean"]],
            product_model=HelloNovelty.fit(chosen[["ch_version", *_LISTS]]),
            clean_model=clean_model, dropped=int((~keep).sum()),
        )

    return kb._memo("product_resemblance", build)  # type: ignore[no-any-return]


#: Columns of :func:`nearest_products`, in order.
NEAREST_COLUMNS = ("product", "product_type", "source", "distance", "clean_distance", "resembles")
#: JA3 texts whose answer is remembered per knowledge base (emptied when full): a one-row request pays the
#: neighbour search once per distinct hello, not on every call (12 ms of a one-row ``POST /v1/score``).
MEMO_SIZE = 65_536


def nearest_products(texts: pd.Series, kb: Knowledge) -> pd.DataFrame:
    """Per JA3 text: the nearest distinctive product hello (``product``, ``product_type``, ``source``,
    ``distance``), the distance to the nearest clean stack hello (``clean_distance``) and ``resembles``.
    Answers are remembered per knowledge base for texts seen before (:data:`MEMO_SIZE`)."""
    memo: dict[object, tuple[object, ...]] = kb._memo("nearest_products", dict)
    keys = texts.tolist()
    known = [memo.get(k) for k in keys]
    miss = [i for i, k in enumerate(known) if k is None]
    if miss:
        fresh = _nearest(texts.iloc[miss].reset_index(drop=True), kb)
        if len(memo) + len(miss) > MEMO_SIZE:
            memo.clear()
        for j, row in enumerate(fresh.itertuples(index=False, name=None)):  # the texts not seen before only
            known[miss[j]] = memo[keys[miss[j]]] = row
    out = pd.DataFrame.from_records([k for k in known if k is not None], columns=list(NEAREST_COLUMNS),
                                    nrows=len(keys))  # fmt: skip
    out["resembles"] = out["resembles"].astype(bool)
    return out


def _nearest(texts: pd.Series, kb: Knowledge) -> pd.DataFrame:
    """:func:`nearest_products` computed, not remembered."""
    model = resemblance(kb)
    hellos, ok = hellos_of_ja3(texts)
    n = len(texts)
    d_product, at = model.product_model.distances(hellos)
    d_clean, _ = model.clean_model.distances(hellos)
    found = ok & (at >= 0)
    pick = model.products.iloc[np.maximum(at, 0)].reset_index(drop=True) if len(model.products) else None
    out = pd.DataFrame({
        "product": pick["product"].where(found) if pick is not None else pd.Series([None] * n, dtype=object),
        "product_type": pick["product_type"].where(found) if pick is not None else None,
        "source": pick["source"].where(found) if pick is not None else None,
        "distance": np.where(found, d_product, np.nan),
        "clean_distance": np.where(ok, d_clean, np.nan),
    })
    out["resembles"] = found & (d_product <= MAX_DISTANCE) & (d_product + MARGIN < d_clean)
    return out


def resemblance_signal(ja3_full: pd.Series, known_product: npt.NDArray[np.object_], kb: Knowledge,
                       ev: Evidence) -> npt.NDArray[np.object_]:
    """Fire ``resembles_interception_product`` on rows whose hello is near a product's and no exact product
    matched; returns ``known_product`` with the resembled product filled in where it fired."""
    n = len(ja3_full)
    if n == 0 or ja3_full.isna().all():
        return known_product
    u = Unique(ja3_full)
    near = nearest_products(u.values, kb)
    fired = u.rows(near["resembles"].to_numpy()) & pd.isna(known_product)
    if not fired.any():
        return known_product
    m = {c: codes_of(u, near[c].astype("string")) for c in ("product", "product_type", "source")}
    dist = np.round(near["distance"].to_numpy(dtype=np.float64), 3)
    clean = np.round(near["clean_distance"].to_numpy(dtype=np.float64), 3)
    row_dist, row_clean = dist[np.maximum(u.codes, 0)], clean[np.maximum(u.codes, 0)]
    ev.add("resembles_interception_product", fired,
           lambda i: ("the hello's offered values are " + texts_at(row_dist, i) + " (Jaccard distance) from "
                      + texts_at(m["product"], i) + "'s (" + texts_at(m["product_type"], i) + "; source: "
                      + texts_at(m["source"], i) + "), nearer than to any clean stack known ("
                      + texts_at(row_clean, i) + "): another build of that product?"),
           expected=m["product"], observed=row_dist)
    out = known_product.copy()
    out[fired] = m["product"].at_rows(np.flatnonzero(fired))
    return out
