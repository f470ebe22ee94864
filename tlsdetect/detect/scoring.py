"""Signals -> score, verdict and reasons, over a whole connections table at once.

Each signal is a boolean mask with a weight and the evidence an analyst needs (``code``,
``detail``, ``expected``, ``observed``: text or null, see :data:`tlsdetect.schema.REASON_FIELDS`).
Masks are computed over distinct values (issuers, fingerprints, hellos, client/fingerprint pairs)
and broadcast by integer codes, so scoring costs a few hash lookups per row and no Python per row;
reasons are assembled only for flagged rows.

The score is the noisy-OR of the weights that fired (two independent 50s make 75, not 100):
strong evidence (a known interception CA or product, a public CA or a look-alike of the mesh CA
where only the mesh CA belongs) reaches ``intercepted`` on its own; anomalies (a fingerprint new
for a stable client, a User-Agent that does not match its hello, structural tells, the
population model) make a row ``suspicious`` and ``intercepted`` when they add up.

The tables and helpers live beside this module, one job each: :mod:`~tlsdetect.detect.evidence` (the
signal table, weights, reasons), :mod:`~tlsdetect.detect.columns` (distinct values and codes),
:mod:`~tlsdetect.detect.issuer_signals`, :mod:`~tlsdetect.detect.fingerprint_signals` and
:mod:`~tlsdetect.detect.population_signals` (the signals, by the evidence they read).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from tlsdetect.detect.baseline import Baseline, client_ids
from tlsdetect.detect.columns import as_category, raw_column, text_column
from tlsdetect.detect.ct_signals import ct_signal
from tlsdetect.detect.evidence import Evidence
from tlsdetect.detect.features import hello_codes
from tlsdetect.detect.fingerprint_signals import baseline_signals, convergence_signal, product_signals
from tlsdetect.detect.identity_signals import identity_signals
from tlsdetect.detect.issuer_signals import issuer_signals, sni_issuer_signal
from tlsdetect.detect.knowledge import Knowledge, load_knowledge
from tlsdetect.detect.pin_signals import Policies, pin_signals
from tlsdetect.detect.population_signals import model_signal, ua_signals
from tlsdetect.detect.product_resemblance import resemblance_signal
from tlsdetect.detect.proxy_hosts import proxy_host_signal
from tlsdetect.detect.quic_share import quic_share_signal
from tlsdetect.detect.quic_tp_signals import quic_params_signals
from tlsdetect.detect.resumption import resumption_signals
from tlsdetect.detect.server_profiles import server_names
from tlsdetect.detect.server_signals import server_signals
from tlsdetect.detect.transport_signals import quic_blocked_signal
from tlsdetect.detect.useragent import ua_family
from tlsdetect.detect.visibility_signals import visibility_signals

__all__ = [
    "NO_BASELINE_COMPARED", "NO_BASELINE_NOT_COMPARED", "SCORE_COLUMNS", "SCORE_OUTPUT_COLUMNS", "SCORE_TABLE_COLUMNS",
    "VERDICTS", "score", "summarize", "verdict_of",
]

VERDICTS = ("ok", "suspicious", "intercepted")
INTERCEPTED_AT = 70.0
SUSPICIOUS_AT = 30.0
SCORE_COLUMNS = ("client_id", "issuer_class", "known_product", "score", "verdict", "reasons", "compared")
#: A scored row as ``tlsdetect score -f jsonl|csv|parquet`` and ``POST /v1/score`` write it. The server's side
#: of the handshake: ``tls_version`` (negotiated when a ServerHello was seen), ``ja3s`` and ``sh_cipher`` (the
#: cipher suite the server chose, its IANA number), ``resumed`` and ``server_flight_bytes`` (see schema.py).
SCORE_OUTPUT_COLUMNS = (
    "ts", "source", "conn_id", "client_ip", "client_port", "server_ip", "server_port", "transport", "sni",
    "tls_version", "ja3", "ja3n", "ja4", "ja3s", "sh_cipher", "resumed", "server_flight_bytes", "server_issuer",
    "peer_subject", "peer_issuer", "user_agent",
    "client_id", "issuer_class", "known_product", "score", "verdict", "reasons", "compared",
)
#: ``compared`` of every row scored with no baseline (knowledge-only scoring).
NO_BASELINE_COMPARED = "knowledge base and issuer rules only: no baseline given"
#: What knowledge-only scoring does not compare (``tlsdetect score`` without ``--baseline`` says so).
NO_BASELINE_NOT_COMPARED = ("no baseline: not compared with per-client fingerprints and versions, the issuers "
                            "each server name presented, a mesh CA, or a population model")
#: The short row of ``tlsdetect score -f table``.
SCORE_TABLE_COLUMNS = ("ts", "client_id", "server_ip", "server_port", "sni", "ja4", "score", "verdict", "reason_codes")


def verdict_of(scores: npt.NDArray[np.float64]) -> pd.Categorical:
    """``intercepted`` from 70, ``suspicious`` from 30, else ``ok`` (a categorical of :data:`VERDICTS`)."""
    codes = np.where(scores >= INTERCEPTED_AT, 2, np.where(scores >= SUSPICIOUS_AT, 1, 0)).astype(np.int64)
    return pd.Categorical.from_codes(codes, categories=pd.Index(list(VERDICTS), dtype=object))


def score(df: pd.DataFrame, baseline: Baseline | None, kb: Knowledge | None = None, *,
          convergence_window: str = "1h", convergence_min_clients: int = 3,
          policies: Policies | None = None) -> pd.DataFrame:
    """Score every row of a connections table; returns it with :data:`SCORE_COLUMNS` added.

    ``baseline`` may be ``None`` (knowledge-only scoring: the knowledge base and the issuer rules, and every
    row's ``compared`` is :data:`NO_BASELINE_COMPARED`); rows whose client is not in the baseline are
    compared with the population and the knowledge base only, as ``compared`` says.
    ``reasons`` holds a list of ``{code, detail, expected, observed}`` dicts on a flagged row and
    the empty tuple on a row without a reason (one shared immutable object, not a million lists).
    Every field is a ``str`` or ``None``, numbers written once as decimal text here, so every writer
    and reader sees one type per field (the schema: :data:`tlsdetect.schema.REASON_FIELDS`).
    ``policies``: pin sets and issuer rules checked report-only (:mod:`~tlsdetect.detect.pin_signals`).
    """
    kb = kb or load_knowledge()
    out = df.reset_index(drop=True)  # a new frame (copy-on-write): the caller's table is never changed
    n = len(out)
    ev = Evidence(n)
    # the columns looked up again and again become categoricals: hashed once here, then codes
    cid = client_ids(out, baseline.client_key if baseline is not None else "auto").reset_index(drop=True)
    cid_text = cid
    cid = cid.astype("category")
    ja4, ja3n, ja3 = (text_column(out, c).astype("category") for c in ("ja4", "ja3n", "ja3"))
    uaf = ua_family(text_column(out, "user_agent"))

    issuer_class = issuer_signals(out, baseline, kb, ev)
    pin_signals(out, policies, kb, ev)
    ct_signal(out, kb, ev)
    known_product = product_signals(ja3, ja3n, ja4, kb, ev)
    known_product = resemblance_signal(raw_column(out, "ja3_full"), known_product, kb, ev)  # codes, not text

    codes, hellos = hello_codes(out)
    compared: Any
    if baseline is None:  # filled, not np.full: a million-row object array of one str costs ~0.17 s that way
        compared = np.empty(n, dtype=object)
        compared.fill(NO_BASELINE_COMPARED)
    else:
        compared = baseline_signals(out, baseline, cid, ja4, ja3n, ev)
        names = server_names(out)  # hashed once for the two signals that key on the server's name
        sni_issuer_signal(out, baseline, ev, names)
        convergence_signal(out, baseline, cid, ja4, ev, convergence_window, convergence_min_clients)
        proxy_host_signal(out, baseline, cid, ev)
        identity_signals(out, baseline, ev)
        quic_blocked_signal(out, baseline, cid, ev)
        quic_share_signal(out, baseline, cid_text, ev)
        quic_params_signals(out, baseline, cid_text, uaf, ev)
        model_signal(codes, hellos, baseline, ev, raw_column(out, "ja3_full"), kb)
        compared = server_signals(out, baseline, ja4, ev, compared, convergence_window, convergence_min_clients,
                                  names)
    ua_signals(out, baseline, kb, ja4, ja3n, ja3, uaf, codes, hellos, ev)
    visibility_signals(out, ev)
    issuer_class = resumption_signals(out, cid, issuer_class, ev)  # last: it reads the certificate evidence

    scores = ev.scores()
    out["client_id"] = cid_text.astype("string")
    out["issuer_class"] = as_category(issuer_class)
    out["known_product"] = as_category(known_product)
    out["score"] = scores
    out["verdict"] = verdict_of(scores)
    out["reasons"] = ev.reasons()
    out["compared"] = as_category(compared)
    return out


# --- summaries --------------------------------------------------------------------------------------
def summarize(scored: pd.DataFrame, top: int = 5) -> dict[str, Any]:
    """Verdict counts, the most frequent reasons and the most flagged clients.

    Reads the three columns it needs and only the flagged rows of two of them: filtering the whole scored
    table (~90 columns) cost ~5 ms of a one-row ``POST /v1/score`` and scales with every column (issue 18 #15).
    """
    verdict = scored["verdict"]
    if isinstance(verdict.dtype, pd.CategoricalDtype) and list(verdict.cat.categories) == list(VERDICTS):
        v_codes = np.asarray(verdict.cat.codes, dtype=np.int64)  # score()'s own verdicts: count the codes
        counts = dict(zip(VERDICTS, np.bincount(v_codes[v_codes >= 0], minlength=len(VERDICTS)).tolist(),
                          strict=True))
    else:
        counts = {str(k): int(v) for k, v in verdict.value_counts().reindex(list(VERDICTS), fill_value=0).items()}
    flagged = np.flatnonzero((verdict != "ok").to_numpy(dtype=bool, na_value=True))
    if len(flagged) == 0:  # nothing to rank
        return {"connections": len(scored), "verdicts": counts, "top_reasons": {}, "top_flagged_clients": {}}
    codes = pd.Series([r["code"] for rs in scored["reasons"].iloc[flagged] for r in rs], dtype="string")
    clients = scored["client_id"].iloc[flagged].value_counts().head(top)
    return {
        "connections": len(scored),
        "verdicts": counts,
        "top_reasons": {str(k): int(v) for k, v in codes.value_counts().head(top).items()},
        "top_flagged_clients": {str(k): int(v) for k, v in clients.items()},
    }
