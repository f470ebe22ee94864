"""Per-client profiles learned from traffic believed clean.

A :class:`Baseline` follows scikit-learn's estimator conventions: ``__init__`` only stores the
parameters, :meth:`Baseline.fit` learns from scratch and :meth:`Baseline.partial_fit` folds more
traffic in, learned state ends in ``_``. Everything is a grouped aggregation over the
connections table (no Python per row), so fitting a million connections takes seconds.

What is learned, per ``client_id``: the JA4 and JA3N fingerprints it used (never raw JA3:
Chrome shuffles its extensions), the issuers it saw, the SNIs it asked for, each with counts and
first/last seen; population-wide, how many connections and clients use each fingerprint, which
User-Agent families send it, which issuers each SNI presented; the mesh's own CA(s); a
nearest-neighbour model over ClientHello values that says how unlike the population a hello is; and,
per server and client hello family, how the server answers (:mod:`~tlsdetect.detect.server_profiles`).

Beside it: :mod:`~tlsdetect.detect.baseline_tables` (what each learned table holds, how tables fold),
:mod:`~tlsdetect.detect.baseline_dir` (the directory a baseline is saved as) and
:mod:`~tlsdetect.detect.mesh` (the mesh CAs a user names).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tlsdetect import schema
from tlsdetect.detect.baseline_dir import (
    BaselineError,
    read_hellos,
    read_meta,
    read_model,
    read_tables,
    save_atomically,
    write_dir,
)
from tlsdetect.detect.baseline_tables import (
    OPTIONAL_KEYS,
    OPTIONAL_TABLES,
    TABLE_KEYS,
    TABLES,
    empty_table,
    merge_table,
    typed_table,
)
from tlsdetect.detect.features import HelloNovelty, hello_codes
from tlsdetect.detect.identities import learn_identities
from tlsdetect.detect.issuers import dn_key
from tlsdetect.detect.ja4_parts import learn_ja4_stacks
from tlsdetect.detect.mesh import LEARN, MeshCA, MeshSpec
from tlsdetect.detect.quic_tp_fingerprint import learn_quic_param_families, learn_quic_params
from tlsdetect.detect.renewals import learn_server_certs
from tlsdetect.detect.server_profiles import learn_server_values, server_summary
from tlsdetect.detect.transports import learn_transports
from tlsdetect.detect.useragent import ua_family

__all__ = ["CLIENT_KEYS", "FP_KINDS", "ROLES", "Baseline", "client_ids"]

CLIENT_KEYS = ("auto", "ip", "mtls", "ua")
FP_KINDS = ("ja4", "ja3n")
ROLES = {"server": ("server_issuer_key", "server_issuer", "server_issuer_akid"),
         "peer": ("peer_issuer_key", "peer_issuer", "peer_issuer_akid")}


def _ts_series(df: pd.DataFrame) -> pd.Series:
    if "ts" in df.columns:
        return pd.to_datetime(df["ts"], utc=True)
    return pd.Series(pd.NaT, index=df.index, dtype="datetime64[ns, UTC]")


def client_ids(df: pd.DataFrame, key: str = "auto") -> pd.Series:
    """The baseline key of each row.

    ``auto``: the row's own ``client_id`` if a source set one, else the mTLS peer subject (a
    workload identity), else the client IP. ``ip``, ``mtls`` (peer subject) and ``ua`` (User-
    Agent family) pick one; any other value names a column of the table.
    """

    def col(name: str) -> pd.Series:
        if name in df.columns:
            return schema.as_text(df[name])
        return pd.Series(pd.NA, index=df.index, dtype="string")

    if key == "auto":
        out = col("client_id")
        for fallback in ("peer_subject", "client_ip"):
            missing = out.isna()
            if not missing.any():
                break
            other = col(fallback)
            if missing.all():
                out = other
            elif other.notna().any():
                out = out.fillna(other)
    elif key == "ip":
        out = col("client_ip")
    elif key == "mtls":
        out = col("peer_subject")
    elif key == "ua":
        out = ua_family(col("user_agent")).astype("string")
    elif key in df.columns:
        out = col(key)
    else:
        raise ValueError(f"client key {key!r} is neither one of {', '.join(CLIENT_KEYS)} nor a column of the input")
    return out.rename("client_id")


def _as_text(frame: pd.DataFrame, *cols: str) -> pd.DataFrame:
    """Aggregates grouped by certificate columns (categoricals) with those columns as text, as the tables hold them."""
    return frame.assign(**{c: schema.as_text(frame[c]) for c in cols})


def _count_by(frame: pd.DataFrame, keys: list[str], ts: bool = True) -> pd.DataFrame:
    g = frame.groupby(keys, sort=False, dropna=False, observed=True)
    out = g.size().rename("count").to_frame()
    if ts:
        out["first_seen"] = g["ts"].min()
        out["last_seen"] = g["ts"].max()
    return out.reset_index()


def _version_of(df: pd.DataFrame) -> pd.Series:
    """Highest TLS version the client offered, from the JA4 version field (present in every source)."""
    ja4 = schema.as_text(df["ja4"]) if "ja4" in df.columns else pd.Series(pd.NA, index=df.index, dtype="string")
    return ja4.str.slice(1, 3)


class Baseline:
    """Per-client fingerprint, issuer and SNI profiles, population prevalence, mesh CAs, hello model.

    Parameters
    ----------
    client_key: how rows map to clients (see :func:`client_ids`).
    mesh_ca: the mesh's CAs (:func:`parse_mesh_ca`); ``None`` or ``[]`` for no mesh CA (the
        default: issuer signals then use the knowledge base only); ``"learn"`` to learn the dominant
        private issuer per role, which trusts whatever the fitted traffic shows, so it is only done
        when asked and flagged as learned (``origin``, :meth:`learned_mesh_warning`).
    model: learn the population model (:class:`tlsdetect.detect.features.HelloNovelty`).
    novelty_threshold: a hello whose nearest baseline hello is farther than this (Jaccard
        distance over offered values) is an outlier; 0.35 means "shares under 65% of its values
        with any hello the population sent".
    mesh_min_share: an issuer is learned as the mesh CA of a role when it signed at least this
        share of that role's certificates.
    """

    # learned state (set by fit; annotated here for type checkers, never assigned in __init__)
    clients_: pd.DataFrame
    fingerprints_: pd.DataFrame
    fp_families_: pd.DataFrame
    issuers_: pd.DataFrame
    issuer_akids_: pd.DataFrame
    snis_: pd.DataFrame
    sni_issuers_: pd.DataFrame
    versions_: pd.DataFrame
    mesh_cas_: pd.DataFrame
    server_values_: pd.DataFrame
    server_certs_: pd.DataFrame
    identities_: pd.DataFrame
    ja4_stacks_: pd.DataFrame
    transports_: pd.DataFrame
    quic_params_: pd.DataFrame
    quic_param_families_: pd.DataFrame
    hellos_: pd.DataFrame
    n_connections_: int
    model_: HelloNovelty | None

    def __init__(
        self,
        client_key: str = "auto",
        mesh_ca: MeshSpec = None,
        model: bool = True,
        novelty_threshold: float = 0.35,
        mesh_min_share: float = 0.8,
    ) -> None:
        self.client_key = client_key
        self.mesh_ca = mesh_ca
        self.model = model
        self.novelty_threshold = novelty_threshold
        self.mesh_min_share = mesh_min_share

    # --- learning -----------------------------------------------------------------------------
    def fit(self, df: pd.DataFrame) -> Baseline:
        """Learn from ``df`` alone (earlier state is discarded)."""
        for name in [*TABLES, *OPTIONAL_TABLES]:
            setattr(self, f"{name}_", empty_table(name))
        self.hellos_ = pd.DataFrame()
        self.n_connections_ = 0
        return self.partial_fit(df)

    def partial_fit(self, df: pd.DataFrame) -> Baseline:
        """Fold more clean traffic into the learned state; the model is refitted on all hellos."""
        if not hasattr(self, "clients_"):
            return self.fit(df)
        if len(df) == 0:
            raise ValueError("no connections to learn from")
        frame = pd.DataFrame({"client_id": client_ids(df, self.client_key), "ts": _ts_series(df)})
        usable = frame["client_id"].notna().to_numpy()
        # as_text: a categorical fingerprint spelled out by Arrow, not through a Python string per row
        fps = {k: (schema.as_text(df[k]) if k in df.columns else None) for k in FP_KINDS}
        if not any(v is not None and v.notna().any() for v in fps.values()) and not any(
            c in df.columns and df[c].notna().any() for c, _, _ in ROLES.values()
        ):
            raise ValueError("no usable rows: the input has neither JA4/JA3N fingerprints nor certificate issuers")

        self.n_connections_ += len(df)
        clients = _count_by(frame[usable], ["client_id"]).rename(columns={"count": "connections"})
        self.clients_ = merge_table("clients", self.clients_, clients, ["client_id"])

        uaf = ua_family(df["user_agent"]) if "user_agent" in df.columns else None
        parts, fam_parts = [], []
        for kind, values in fps.items():
            if values is None:
                continue
            sub = frame.assign(kind=kind, value=values)
            sub = sub[usable & values.notna().to_numpy()]
            parts.append(_count_by(sub, ["client_id", "kind", "value"]))
            if uaf is not None:
                fam = pd.DataFrame({"kind": kind, "value": values, "ua_family": uaf})
                fam = fam[values.notna().to_numpy() & uaf.notna().to_numpy()]
                fam_parts.append(_count_by(fam, ["kind", "value", "ua_family"], ts=False))
        if parts:
            self.fingerprints_ = merge_table("fingerprints", self.fingerprints_, pd.concat(parts),
                                        ["client_id", "kind", "value"])
        if fam_parts:
            self.fp_families_ = merge_table("fp_families", self.fp_families_, pd.concat(fam_parts),
                                       ["kind", "value", "ua_family"])
        if fps["ja4"] is not None:
            has_origin = "fingerprint_origin" in df.columns
            origin = df["fingerprint_origin"] if has_origin else pd.Series(pd.NA, index=df.index)
            self.ja4_stacks_ = merge_table("ja4_stacks", getattr(self, "ja4_stacks_", empty_table("ja4_stacks")),
                                           learn_ja4_stacks(fps["ja4"], origin, frame["client_id"], frame["ts"]),
                                           OPTIONAL_KEYS["ja4_stacks"])

        iss_parts, akid_parts = [], []
        for role, (key_col, name_col, akid_col) in ROLES.items():
            if key_col not in df.columns:
                continue
            # grouped as stored (certificate columns: categorical codes); only the small aggregates become text
            keys = df[key_col]
            has = keys.notna().to_numpy()
            names = df[name_col] if name_col in df.columns else keys
            sub = frame.assign(role=role, issuer_key=keys, issuer=names)[usable & has]
            g = sub.groupby(["client_id", "role", "issuer_key"], sort=False, observed=True)
            agg = g.size().rename("count").to_frame()
            agg["issuer"] = g["issuer"].first()
            agg["first_seen"] = g["ts"].min()
            agg["last_seen"] = g["ts"].max()
            iss_parts.append(_as_text(agg.reset_index(), "issuer_key", "issuer"))
            if akid_col in df.columns:
                ak = pd.DataFrame({"role": role, "issuer_key": keys, "akid": df[akid_col]})
                ak = ak[has & ak["akid"].notna().to_numpy()]
                counted = _count_by(ak, ["role", "issuer_key", "akid"], ts=False)
                akid_parts.append(_as_text(counted, "issuer_key", "akid"))
        if iss_parts:
            self.issuers_ = merge_table("issuers", self.issuers_, pd.concat(iss_parts),
                                        ["client_id", "role", "issuer_key"])
        if akid_parts:
            self.issuer_akids_ = merge_table("issuer_akids", self.issuer_akids_, pd.concat(akid_parts),
                                        ["role", "issuer_key", "akid"])

        if "sni" in df.columns:
            sni = df["sni"].astype("string").str.lower()
            sub = frame.assign(sni=sni)[usable & sni.notna().to_numpy()]
            self.snis_ = merge_table("snis", self.snis_, _count_by(sub, ["client_id", "sni"]), ["client_id", "sni"])
            if "server_issuer_key" in df.columns:
                si_keys = df["server_issuer_key"]
                si = pd.DataFrame({"sni": sni, "issuer_key": si_keys, "issuer": df.get("server_issuer", si_keys)})
                si = si[si["sni"].notna().to_numpy() & si["issuer_key"].notna().to_numpy()]
                g = si.groupby(["sni", "issuer_key"], sort=False, observed=True)
                agg = g.size().rename("count").to_frame()
                agg["issuer"] = g["issuer"].first()
                self.sni_issuers_ = merge_table("sni_issuers", self.sni_issuers_,
                                           _as_text(agg.reset_index(), "issuer_key", "issuer"), ["sni", "issuer_key"])

        ver = frame.assign(max_version=_version_of(df))
        ver = ver[usable & ver["max_version"].notna().to_numpy()]
        self.versions_ = merge_table("versions", self.versions_, _count_by(ver, ["client_id", "max_version"], ts=False),
                                ["client_id", "max_version"])

        self.server_values_ = merge_table("server_values", self.server_values_,
                                          learn_server_values(df, frame["ts"]), OPTIONAL_KEYS["server_values"])
        self.server_certs_ = merge_table("server_certs", getattr(self, "server_certs_", empty_table("server_certs")),
                                         learn_server_certs(df, frame["ts"]), OPTIONAL_KEYS["server_certs"])
        self.identities_ = merge_table("identities", getattr(self, "identities_", empty_table("identities")),
                                       learn_identities(df, frame["ts"]), OPTIONAL_KEYS["identities"])
        self.transports_ = merge_table("transports", getattr(self, "transports_", empty_table("transports")),
                                       learn_transports(df, frame["client_id"], frame["ts"]),
                                       OPTIONAL_KEYS["transports"])
        self._learn_quic_params(df, frame, uaf)

        _, hellos = hello_codes(df)
        if len(hellos):
            self.hellos_ = self._merge_hellos(self.hellos_, hellos)
        self._learn_mesh()
        self._fit_model()
        return self

    def _learn_quic_params(self, df: pd.DataFrame, frame: pd.DataFrame, uaf: pd.Series | None) -> None:
        """Fold the QUIC transport-parameter fingerprints per client and per User-Agent family."""
        self.quic_params_ = merge_table("quic_params", getattr(self, "quic_params_", empty_table("quic_params")),
                                        learn_quic_params(df, frame["client_id"], frame["ts"]),
                                        OPTIONAL_KEYS["quic_params"])
        old = getattr(self, "quic_param_families_", empty_table("quic_param_families"))
        if uaf is not None:
            old = merge_table("quic_param_families", old, learn_quic_param_families(df, uaf),
                              OPTIONAL_KEYS["quic_param_families"])
        self.quic_param_families_ = old

    def from_tables(self, tables: dict[str, pd.DataFrame], hellos: pd.DataFrame, n_connections: int) -> Baseline:
        """Learn from aggregates computed elsewhere (``tlsdetect.spark``): the state ``fit`` would set.

        ``tables`` maps each learned table but ``mesh_cas`` (see :data:`TABLES`) to its rows, one per
        key of :data:`TABLE_KEYS` (counts summed, first/last seen over the whole input, names the
        first seen); ``hellos`` holds the distinct hellos with ``connections`` in the order
        :func:`tlsdetect.detect.features.hello_codes` gives them; ``n_connections`` counts every input row.
        Tables are folded as :meth:`partial_fit` folds its own, then the mesh and model are learned.
        """
        if n_connections <= 0:
            raise ValueError("no connections to learn from")
        for name, keys in {**TABLE_KEYS, **OPTIONAL_KEYS}.items():  # an optional table not given is empty
            part = tables.get(name)
            new = empty_table(name) if part is None or len(part) == 0 else typed_table(name, part)
            setattr(self, f"{name}_", merge_table(name, empty_table(name), new, keys))
        self.hellos_ = self._merge_hellos(pd.DataFrame(), hellos) if len(hellos) else pd.DataFrame()
        self.n_connections_ = int(n_connections)
        self._learn_mesh()
        self._fit_model()
        return self

    @staticmethod
    def _merge_hellos(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
        both = pd.concat([old, new], ignore_index=True) if len(old) else new.reset_index(drop=True)
        key = both.drop(columns="connections").map(
            lambda v: tuple(int(x) if not isinstance(x, str) else x for x in v)
            if isinstance(v, (list, tuple, np.ndarray)) else v
        )
        ident = pd.util.hash_pandas_object(key.astype(str), index=False)
        both["connections"] = both.groupby(ident.to_numpy())["connections"].transform("sum")
        return both[~ident.duplicated().to_numpy()].reset_index(drop=True)

    def _learn_mesh(self) -> None:
        if not isinstance(self.mesh_ca, str):  # given (or none): never learned
            rows = [{"role": "any", "issuer_key": dn_key(m.issuer), "issuer": m.issuer, "ski": m.ski,
                     "sha256": m.sha256, "origin": "given", "connections": 0} for m in self.mesh_ca or []]
            self.mesh_cas_ = typed_table("mesh_cas", pd.DataFrame(rows, columns=list(TABLES["mesh_cas"])))
            return
        from tlsdetect.detect.knowledge import classify_issuers

        rows = []
        for role in ROLES:
            iss = self.issuers_[self.issuers_["role"] == role]
            if len(iss) == 0:
                continue
            per = iss.groupby("issuer_key", observed=True).agg(count=("count", "sum"), issuer=("issuer", "first"))
            per = per.sort_values("count", ascending=False)
            top_key, top = per.index[0], per.iloc[0]
            if top["count"] < self.mesh_min_share * per["count"].sum():
                continue
            cls = classify_issuers(pd.Series([top["issuer"]], dtype="string"))
            if bool(cls["public"].fillna(False).iloc[0]) or pd.notna(cls["interception_product"].iloc[0]):
                continue
            akids = self.issuer_akids_[(self.issuer_akids_["role"] == role)
                                       & (self.issuer_akids_["issuer_key"] == top_key)]
            for ski in akids["akid"].tolist() or [None]:
                rows.append({"role": role, "issuer_key": top_key, "issuer": top["issuer"], "ski": ski,
                             "sha256": None, "origin": "learned", "connections": int(top["count"])})
        self.mesh_cas_ = typed_table("mesh_cas", pd.DataFrame(rows, columns=list(TABLES["mesh_cas"])))

    def _fit_model(self) -> None:
        self.model_ = HelloNovelty.fit(self.hellos_) if self.model and len(self.hellos_) else None

    # --- derived views ------------------------------------------------------------------------
    def learned_mesh_warning(self) -> str | None:
        """One line saying that a learned mesh CA is in use (``None`` when every mesh CA was given).

        A learned mesh CA makes every certificate from another issuer an alarm: fitted on ordinary
        internet traffic it turns public CAs into ``public_ca_in_mesh``. Every command that fits,
        shows or scores with such a baseline prints this line.
        """
        learned = self.mesh_cas_[self.mesh_cas_["origin"] == "learned"] if hasattr(self, "mesh_cas_") else None
        if learned is None or len(learned) == 0:
            return None
        names = "; ".join(dict.fromkeys(learned["issuer"].dropna().astype(str)))
        return (f"this baseline uses a LEARNED mesh CA ({names}): certificates of every other issuer are alarms; "
                "confirm it is your mesh's CA, or refit with --mesh-ca FILE.pem|DN (or none)")

    def prevalence(self) -> pd.DataFrame:
        """Per fingerprint: connections, clients using it, first/last seen."""
        fp = self.fingerprints_
        if len(fp) == 0:
            return pd.DataFrame(columns=["kind", "value", "connections", "clients", "first_seen", "last_seen"])
        g = fp.groupby(["kind", "value"], observed=True)
        return pd.DataFrame({
            "connections": g["count"].sum(), "clients": g["client_id"].nunique(),
            "first_seen": g["first_seen"].min(), "last_seen": g["last_seen"].max(),
        }).reset_index()

    def client_stability(self) -> pd.DataFrame:
        """Per client: distinct JA4s and the share of its connections on its most common one."""
        fp = self.fingerprints_
        kind = fp[fp["kind"] == "ja4"]
        if len(kind) == 0:
            kind = fp[fp["kind"] == "ja3n"]
        g = kind.groupby("client_id", observed=True)["count"]
        out = pd.DataFrame({"fingerprints": g.size(), "stability": g.max() / g.sum()})
        return out.reset_index()

    def summary(self) -> dict[str, Any]:
        """What ``meta.json`` and ``baseline show`` print: parameters, counts, mesh CAs."""
        fp = self.fingerprints_
        first = self.clients_["first_seen"].min() if len(self.clients_) else pd.NaT
        last = self.clients_["last_seen"].max() if len(self.clients_) else pd.NaT
        return {
            "connections": int(self.n_connections_),
            "clients": len(self.clients_),
            "fingerprints": {k: int((fp["kind"] == k).sum()) for k in FP_KINDS},
            "distinct_fingerprints": {k: int(fp.loc[fp["kind"] == k, "value"].nunique()) for k in FP_KINDS},
            "issuers": int(self.issuers_["issuer_key"].nunique()),
            "snis": int(self.snis_["sni"].nunique()),
            "distinct_hellos": len(self.hellos_),
            "first_seen": None if pd.isna(first) else first.isoformat(),
            "last_seen": None if pd.isna(last) else last.isoformat(),
            "mesh_cas": [
                {k: (None if pd.isna(v) else (int(v) if k == "connections" else str(v))) for k, v in r.items()}
                for r in self.mesh_cas_.to_dict("records")
            ],
            "model": None if self.model_ is None else {
                "kind": "nearest-neighbour Jaccard novelty (sklearn NearestNeighbors)",
                "hellos": len(self.model_.labels), "values": len(self.model_.tokens),
                "threshold": self.novelty_threshold,
            },
        }

    # --- persistence --------------------------------------------------------------------------
    def save(self, directory: str | Path, *, overwrite: bool = False) -> Path:
        """Write the baseline directory atomically: a reader (``serve``) sees the old or the new one, whole.

        The files are written into a fresh directory beside ``directory`` and renamed into place;
        an existing baseline is swapped out in one step (Linux ``renameat2(RENAME_EXCHANGE)``) and
        then deleted, so an error or a crash at any moment leaves the old baseline or the new one,
        never a mixture. An existing baseline is replaced only with ``overwrite``; a directory with
        other files in it never is (:class:`~tlsdetect.detect.baseline_dir.BaselineExistsError`).
        Parents are created as needed (:func:`tlsdetect.detect.baseline_dir.save_atomically`).
        """
        if not hasattr(self, "clients_"):
            raise ValueError("this baseline has not been fitted")
        return save_atomically(directory, self._write, overwrite=overwrite)

    def _write(self, out: Path) -> None:
        params = {
            "client_key": self.client_key,
            # "learn", or the given CAs ([] for none); null was "learn" before issue 14 (see load)
            "mesh_ca": LEARN if isinstance(self.mesh_ca, str) else [m.__dict__ for m in self.mesh_ca or []],
            "model": self.model, "novelty_threshold": self.novelty_threshold,
            "mesh_min_share": self.mesh_min_share,
        }
        summary = {**self.summary(), "server_profiles": server_summary(self.server_values_)}
        write_dir(out, {name: getattr(self, f"{name}_") for name in [*TABLES, *OPTIONAL_TABLES]}, self.hellos_,
                  self.model_, params, summary)

    @classmethod
    def load(cls, directory: str | Path) -> Baseline:
        """Read a baseline directory; any problem is a ``BaselineError`` naming the file (``baseline_dir``)."""
        root = Path(directory)
        meta_path, meta, params = read_meta(root)
        try:
            mesh = params.get("mesh_ca")
            self = cls(
                client_key=str(params["client_key"]),
                # null: a baseline written when learning was the default ('--mesh-ca auto') learned its CA
                mesh_ca=LEARN if mesh in (None, LEARN) else [MeshCA(**m) for m in mesh],
                model=bool(params["model"]), novelty_threshold=float(params["novelty_threshold"]),
                mesh_min_share=float(params["mesh_min_share"]),
            )
            summary = meta["summary"]
            self.n_connections_ = int(summary["connections"])
            files = meta["files"]
            if not isinstance(files, dict):
                raise TypeError("\"files\" must be an object")
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise BaselineError(f"{meta_path}: missing or malformed field ({type(exc).__name__}: {exc})") from None
        for name, table in read_tables(root).items():
            setattr(self, f"{name}_", table)
        self.hellos_ = read_hellos(root)
        self.model_ = read_model(root) if "model" in files else None
        return self
