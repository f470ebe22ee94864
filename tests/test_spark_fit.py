"""Fitting on Spark (:mod:`tlsdetect.spark.fit`) learns the local fit's baseline, with any options; the default
fit over read, fit and score is compared end to end in ``test_spark.py``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("pyspark")

from tlsdetect.detect.baseline import Baseline
from tlsdetect.detect.baseline_tables import OPTIONAL_TABLES, TABLES
from tlsdetect.readers.inputs import Inputs

from .conftest import PROJECT_PCAPS as PCAPS

pytest_plugins = ["tests.spark_fixtures"]  # spark


def test_aggregates_come_back_as_utc_times_and_int64_counts() -> None:
    """Spark hands first/last seen over as exact nanoseconds (int64) and counts as int32 or int64."""
    from tlsdetect.spark.fit import _times

    ns = [0, 1_454_006_230_545_976_123]
    df = pd.DataFrame({"first_seen": np.array(ns, dtype=np.int64), "count": np.array([1, 2], dtype=np.int32)})
    out = _times(df)
    assert str(out["first_seen"].dtype) == "datetime64[ns, UTC]"
    assert [t.value for t in out["first_seen"]] == ns
    assert out["count"].dtype == np.int64


@pytest.mark.slow
@pytest.mark.parametrize(("client_key", "mesh_ca", "model"), [("ua", "learn", False), ("server_ip", None, True)])
def test_fit_with_options_equals_local(spark: Any, tmp_path: Path, client_key: str, mesh_ca: str | None,
                                       model: bool) -> None:
    """Other client keys, a learned mesh CA and no hello model: still the local fit's tables and summary."""
    from tlsdetect.spark import fit_baseline, read_connections

    fit_baseline(read_connections(spark, [str(PCAPS)]), client_key=client_key, mesh_ca=mesh_ca,
                 model=model).save(tmp_path / "spark")
    Baseline(client_key=client_key, mesh_ca=mesh_ca, model=model).fit(Inputs([str(PCAPS)]).read_all()).save(
        tmp_path / "local")
    a, b = Baseline.load(tmp_path / "spark"), Baseline.load(tmp_path / "local")
    for name in [*TABLES, *OPTIONAL_TABLES]:
        pd.testing.assert_frame_equal(getattr(a, f"{name}_"), getattr(b, f"{name}_"), obj=name)
    assert len(a.server_values_) > 0
    assert len(a.server_certs_) > 0
    assert a.model_ is None if not model else a.model_ is not None
    assert a.summary() == b.summary()


def _renewed(df: pd.DataFrame, grow: int = 825) -> pd.DataFrame:
    """``df`` where the curl server's TLS 1.2 answers from the third hour on show a new certificate ``grow``
    bytes larger (a renewal, seen in clear)."""
    out = df.copy()
    hit = ((out["sni"] == "curl.sample.tlsdetect.test") & (out["tls_version"] == "TLSv1.2")
           & (out["ts"] >= out["ts"].min() + pd.Timedelta(hours=2))).to_numpy()
    certs = out["server_cert_sha256"].astype(object).to_numpy(copy=True)
    certs[hit] = "ab" * 32
    out["server_cert_sha256"] = pd.Series(certs, index=out.index).astype("category")
    flights = out["server_flight"].to_numpy(dtype=object, copy=True)
    for i in np.flatnonzero(hit):
        flights[i] = (flights[i][0] + grow, *flights[i][1:])
    out["server_flight"] = pd.Series(flights, index=out.index, dtype=object)
    out["server_flight_bytes"] = (out["server_flight_bytes"] + np.where(hit, grow, 0)).astype("Int32")
    return out


@pytest.mark.slow
def test_server_tables_equal_the_local_fit_over_many_batches(spark: Any) -> None:
    """Two hello families per server and a renewal, spread over four partitions: the partial tables fold to
    the local fit's (counts summed, first/last seen widened, ``rest_bytes`` the least of every batch)."""
    from tests.detect_data import population
    from tests.test_server_profiles import with_flights
    from tlsdetect.detect.issuers import add_issuer_keys
    from tlsdetect.spark import connections_schema, fit_baseline
    from tlsdetect.spark.schema import to_spark_frame, unpack_columns

    df = _renewed(add_issuer_keys(with_flights(population(repeat=8))))
    frame = spark.createDataFrame(to_spark_frame(df), connections_schema(packed=True)).repartition(4)
    assert frame.rdd.getNumPartitions() == 4
    a = fit_baseline(unpack_columns(frame), model=False)
    b = Baseline(model=False).fit(df)
    for name in OPTIONAL_TABLES:
        pd.testing.assert_frame_equal(getattr(a, f"{name}_"), getattr(b, f"{name}_"), obj=name)
    curl = a.server_values_[(a.server_values_["scope"] == "sni")
                            & (a.server_values_["server"] == "curl.sample.tlsdetect.test")]
    assert curl["family"].nunique() == 2
    certs = a.server_certs_[(a.server_certs_["scope"] == "sni")
                            & (a.server_certs_["server"] == "curl.sample.tlsdetect.test")]
    assert sorted(certs["cert_bytes"].tolist()) == [1616, 1616 + 825]
    assert int(certs["count"].sum()) == 8  # the curl client's TLS 1.2 connections, one per hour
    # the rest of the flight varies by up to 2 bytes per row (with_flights): the fold keeps the least
    rows = df[(df["sni"] == "curl.sample.tlsdetect.test") & (df["tls_version"] == "TLSv1.2")]
    rest = (rows["server_flight_bytes"].astype(int) - rows["server_flight"].map(lambda f: f[0])).groupby(
        rows["server_cert_sha256"].astype(str)).agg(["min", "max"])
    assert (rest["max"] > rest["min"]).any()
    assert dict(zip(certs["cert"], certs["rest_bytes"].astype(int), strict=True)) == rest["min"].to_dict()


@pytest.mark.slow
def test_fit_of_no_rows_is_the_local_error(spark: Any) -> None:
    from tlsdetect.spark import fit_baseline, read_connections

    with pytest.raises(ValueError, match="no connections to learn from"):
        Baseline().fit(Inputs([str(PCAPS)]).read_all().iloc[:0])
    with pytest.raises(ValueError, match="no connections to learn from"):
        fit_baseline(read_connections(spark, [str(PCAPS)]).limit(0))


@pytest.mark.slow
def test_quic_parameter_tables_equal_the_local_fit(spark: Any) -> None:
    """Real QUIC hellos (Chromium, aioquic) over two partitions, half of them with a User-Agent: the QUIC
    transport-parameter tables, per client and per family, are the local fit's and not empty."""
    from tlsdetect.spark import connections_schema, fit_baseline
    from tlsdetect.spark.schema import to_spark_frame, unpack_columns

    quic = Path(__file__).parent / "data" / "quic" / "quic.pcapng"
    df = Inputs([str(quic)]).read_all()
    assert df["quic_transport_params"].notna().sum() >= 3
    ua = np.where(np.arange(len(df)) % 2 == 0, "Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0.0.0 Safari/537.36", None)
    df["user_agent"] = pd.Series(ua, index=df.index, dtype="string")
    frame = spark.createDataFrame(to_spark_frame(df), connections_schema(packed=True)).repartition(2)
    a = fit_baseline(unpack_columns(frame), model=False)
    b = Baseline(model=False).fit(df)
    for name in ("quic_params", "quic_param_families"):
        pd.testing.assert_frame_equal(getattr(a, f"{name}_"), getattr(b, f"{name}_"), obj=name)
    assert len(a.quic_params_) >= 2
    assert len(a.quic_param_families_) >= 1
