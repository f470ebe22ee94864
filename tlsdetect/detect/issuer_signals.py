"""Issuer signals: interception CAs (by name and blocklisted certificate), the mesh CA and its look-alikes,
public and unknown CAs where only the mesh CA belongs, and a server name whose issuer changed."""

from __future__ import annotations

import json

import numpy as np
import numpy.typing as npt
import pandas as pd

from tlsdetect import schema
from tlsdetect.detect.baseline import ROLES, Baseline
from tlsdetect.detect.columns import Codes, Unique, codes_of, pair_in, positions, raw_column, texts_at
from tlsdetect.detect.derived import derived
from tlsdetect.detect.evidence import Evidence
from tlsdetect.detect.issuers import dn_key
from tlsdetect.detect.knowledge import Knowledge, classify_issuers
from tlsdetect.detect.server_profiles import Coded, server_names

__all__ = ["CLASS_RANK", "issuer_signals", "sni_issuer_signal"]

CLASS_RANK = ["interception", "mesh-lookalike", "public-in-mesh", "unknown-in-mesh", "mesh", "public", "private"]


def issuer_signals(df: pd.DataFrame, baseline: Baseline | None, kb: Knowledge, ev: Evidence) -> pd.Categorical:
    n = len(df)
    rank = np.full(n, len(CLASS_RANK), dtype=np.int64)
    mesh = baseline.mesh_cas_ if baseline is not None else None
    keys_by_sha: pd.DataFrame | None = kb._memo("interception_keys_by_sha", lambda: (
        kb.interception_keys.set_index("sha256") if len(kb.interception_keys) else None))
    for role, (key_col, name_col, akid_col) in ROLES.items():
        names = raw_column(df, name_col)
        keys = raw_column(df, key_col)
        if names.isna().all() and keys.isna().all():
            continue
        if (names.isna() & keys.notna()).any():  # a key without its DN: as text (a categorical takes no new values)
            names = schema.as_text(names).fillna(schema.as_text(keys))
        u = Unique(names)
        valid = u.codes >= 0
        first = np.full(len(u.values), len(valid), dtype=np.int64)
        np.minimum.at(first, u.codes[valid], np.flatnonzero(valid))  # first row of each distinct name
        first_keys = keys.iloc[first].to_numpy(dtype=object) if len(first) else np.array([], dtype=object)
        keys_u = np.array([k if k is not None and k is not pd.NA else dn_key(str(nm))
                           for k, nm in zip(first_keys, u.values, strict=True)], dtype=object)
        cls = classify_issuers(u.values, kb)
        has = valid
        names_c = codes_of(u, u.values)
        product, source = codes_of(u, cls["interception_product"]), codes_of(u, cls["interception_source"])
        intercept = u.rows(cls["interception_product"].notna().to_numpy())
        public = u.rows(cls["public"].astype("boolean").fillna(False).to_numpy(dtype=bool)) & ~intercept
        what = "server certificate" if role == "server" else "client certificate"
        ev.add("interception_ca", intercept,
               lambda i, what=what, names=names_c, product=product, source=source: (
                   f"the {what} was issued by " + texts_at(names, i) + ", a known interception CA ("
                   + texts_at(product, i)
                   + "; source: " + texts_at(source, i) + ")"),
               expected="an issuer that is not an interception product", observed=names_c)
        rank = np.where(intercept, np.minimum(rank, 0), rank)

        sha_col = "server_cert_sha256" if role == "server" else "peer_cert_sha256"
        if keys_by_sha is not None and sha_col in df.columns:
            su = Unique(raw_column(df, sha_col))
            sha = codes_of(su, su.values.str.lower())
            pos = su.rows(np.asarray(pd.Index(keys_by_sha.index).get_indexer(su.values.str.lower()), dtype=np.int64),
                          fill=-1).astype(np.int64)
            blocked = pos >= 0
            prod = np.asarray(keys_by_sha["product"].to_numpy(dtype=object))
            ev.add("interception_ca", blocked,
                   lambda i, what=what, pos=pos, prod=prod: [
                       f"the {what} is a blocklisted interception certificate ({prod[p]})" for p in pos[i]],
                   expected="a certificate not on Chromium's interception blocklist", observed=sha)
            rank = np.where(blocked, 0, rank)

        mesh_role = mesh[mesh["role"].isin([role, "any"])] if mesh is not None and len(mesh) else None
        if mesh_role is None or len(mesh_role) == 0:
            rank = np.where(has & public, np.minimum(rank, 5), np.where(has, np.minimum(rank, 6), rank))
            continue
        # the mesh CA by DN (readers put every source's DNs in one order), then its key where the row has
        # one: the leaf's AKID against the mesh CA's SKI, chain certificates (_chain_lookalike)
        mesh_keys = pd.Index(mesh_role["issuer_key"].dropna().unique())
        in_mesh_dn = u.rows(np.asarray(mesh_keys.get_indexer(pd.Index(keys_u, dtype=object)), dtype=np.int64) >= 0)
        mesh_names = "; ".join(mesh_role["issuer"].dropna().unique().tolist())
        skis = mesh_role["ski"].dropna()
        lookalike = np.zeros(n, dtype=bool)
        if len(skis) and akid_col in df.columns:
            au = Unique(raw_column(df, akid_col))
            akid = codes_of(au, au.values.str.lower())
            known = pd.Index(skis.str.lower().unique())
            unknown_key = au.rows(np.asarray(known.get_indexer(au.values.str.lower())) < 0)
            lookalike = in_mesh_dn & (au.codes >= 0) & unknown_key
            ev.add("mesh_ca_lookalike", lookalike,
                   lambda i, what=what, names=names_c, akid=akid: (
                       f"the {what} names the mesh CA " + texts_at(names, i) + " as issuer but was signed by key "
                       + texts_at(akid, i) + ", not the mesh CA's key"),
                   expected="key id " + ", ".join(known.tolist()), observed=akid)
        chain_hit = _chain_lookalike(df, role, mesh_role)
        if chain_hit is not None:
            ev.add("mesh_ca_lookalike", chain_hit & ~lookalike,
                   f"the {what} chain holds a CA certificate with the mesh CA's name and another key or fingerprint",
                   expected="mesh CA " + ", ".join([f"key id {k}" for k in skis.str.lower().unique()]
                                                   + [f"certificate {h}" for h in mesh_role["sha256"].dropna()]),
                   observed=raw_column(df, "server_chain"))
            lookalike |= chain_hit
        pub_mesh = has & public & ~in_mesh_dn
        ev.add("public_ca_in_mesh", pub_mesh,
               lambda i, what=what, names=names_c, mesh_names=mesh_names: (
                   "a public CA (" + texts_at(names, i)
                   + f") issued the {what}; in this mesh only {mesh_names} issues them"),
               expected=mesh_names, observed=names_c)
        unknown = has & ~public & ~intercept & ~in_mesh_dn
        ev.add("unknown_issuer_in_mesh", unknown,
               lambda i, what=what, names=names_c, mesh_names=mesh_names: (
                   f"the {what} was issued by " + texts_at(names, i) + f", which is neither the mesh CA ({mesh_names}) "
                   "nor a public CA"),
               expected=mesh_names, observed=names_c)
        rank = np.where(lookalike, np.minimum(rank, 1), rank)
        rank = np.where(pub_mesh, np.minimum(rank, 2), rank)
        rank = np.where(unknown, np.minimum(rank, 3), rank)
        rank = np.where(has & in_mesh_dn, np.minimum(rank, 4), rank)
    codes = np.where(rank >= len(CLASS_RANK), -1, rank)
    return pd.Categorical.from_codes(codes, categories=pd.Index(CLASS_RANK, dtype=object))


def _chain_lookalike(df: pd.DataFrame, role: str, mesh_role: pd.DataFrame) -> npt.NDArray[np.bool_] | None:
    """Chains (pcap TLS <= 1.2) holding a CA cert named like the mesh CA but with another key or SHA-256.

    A chain certificate is compared by its SKI where both it and the mesh CA have one (a re-issued
    mesh CA keeps its key), else by its SHA-256; ``None`` when there is nothing to compare with.
    A source without chains, or whose chains are all missing, gives no hit.
    """
    shas = set(mesh_role["sha256"].dropna().str.lower())
    skis = set(mesh_role["ski"].dropna().str.lower())
    if role != "server" or not (shas or skis) or "server_chain" not in df.columns:
        return None
    keys = set(mesh_role["issuer_key"].dropna())
    chains = Unique(raw_column(df, "server_chain"))  # each distinct chain parsed once
    hit = np.zeros(len(chains.values), dtype=bool)
    for i, text in enumerate(chains.values):
        try:
            chain = json.loads(text)
        except (TypeError, ValueError):
            continue
        for cert in chain[1:] if isinstance(chain, list) else []:
            if not isinstance(cert, dict) or dn_key(cert.get("subject")) not in keys:
                continue
            ski = str(cert.get("ski") or "").lower()
            if ski and skis:
                hit[i] |= ski not in skis
            elif shas:
                hit[i] |= str(cert.get("sha256", "")).lower() not in shas
    return np.asarray(chains.rows(hit), dtype=bool)  # a row without a chain: no hit


class _SniIssuers:
    """The issuers each server name presented in the baseline, indexed (once per baseline: ``derived``)."""

    def __init__(self, si: pd.DataFrame) -> None:
        self.si = si
        self.snis = pd.Index(si["sni"].unique())
        self.keys = pd.Index(si["issuer_key"].unique())
        self.pairs_s = np.asarray(self.snis.get_indexer(si["sni"]), dtype=np.int64)
        self.pairs_k = np.asarray(self.keys.get_indexer(si["issuer_key"]), dtype=np.int64)
        self._usual: npt.NDArray[np.object_] | None = None

    def usual(self) -> npt.NDArray[np.object_]:
        """Per server name (in ``snis`` order): its three most common issuers (made on first use)."""
        if self._usual is None:
            usual = self.si.sort_values("count", ascending=False).groupby("sni", observed=True)["issuer"].agg(
                lambda v: "; ".join(v.astype(str).head(3)))
            self._usual = usual.reindex(self.snis).to_numpy(dtype=object)
        return self._usual


def sni_issuer_signal(df: pd.DataFrame, b: Baseline, ev: Evidence, sni_names: Coded | None = None) -> None:
    """A server name that presented certificates of other issuers throughout the baseline (``sni_names``: the
    rows' :func:`~tlsdetect.detect.server_profiles.server_names`, when the caller has them already)."""
    si = b.sni_issuers_
    if len(si) == 0 or "sni" not in df.columns or "server_issuer_key" not in df.columns:
        return
    coded = sni_names if sni_names is not None else server_names(df)
    # lowercase, as the baseline learned them; code -1 (no name) takes the trailing None
    sni = Codes(coded.codes, np.append(np.asarray(coded.texts, dtype=object), np.array([None], dtype=object)))
    key = raw_column(df, "server_issuer_key")
    learned = derived(b, "issuer_signals.sni_issuers", ("sni_issuers_",), lambda: _SniIssuers(si))
    snis, keys = learned.snis, learned.keys
    s_pos = np.append(np.asarray(snis.get_indexer(pd.Index(coded.texts, dtype=object)), dtype=np.int64), -1)[
        coded.codes]
    k_pos = positions(key, keys)
    seen = pair_in(s_pos, k_pos, learned.pairs_s, learned.pairs_k, len(keys))
    changed = (s_pos >= 0) & key.notna().to_numpy() & ~seen
    if not changed.any():
        return
    expected = learned.usual()[np.maximum(s_pos, 0)]
    def names(i: npt.NDArray[np.int64]) -> npt.NDArray[np.object_]:
        shown = raw_column(df, "server_issuer").iloc[i].to_numpy(dtype=object)
        fallback = key.iloc[i].to_numpy(dtype=object)
        out: npt.NDArray[np.object_] = np.where(pd.isna(shown), fallback, shown)
        return out

    ev.add("issuer_changed_for_sni", changed,
           lambda i: ("the server " + texts_at(sni, i) + " presented a certificate issued by "
                      + pd.Series(names(i), dtype=object).fillna("")
                      + "; throughout the baseline its certificates came from " + texts_at(expected, i)),
           expected=expected, observed=names)
