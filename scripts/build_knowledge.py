"""Regenerate the knowledge base ``tlsdetect/detect/knowledge/*.csv`` from ``../shared`` and the project's captures.

Run from the repository root::

    .venv/bin/python scripts/build_knowledge.py   # --shared ../shared, --out tlsdetect/detect/knowledge
    .venv/bin/python scripts/build_knowledge.py --shared /path/to/shared --out /tmp/kb

Inputs (nothing else is read; nothing is downloaded):

* ``<shared>/knowledge/`` -- Chromium's interception-software CA regexes and blocklisted keys, cloudflare/mitmengine's
  ClientHello records of interception products, salesforce's JA3 list, FoxIO's JA4 mapping (the ``ja4`` column only),
  and SOURCES.md, whose table gives every source's repository, path and commit;
* ``<shared>/pcaps/interception/`` -- five real captures of interception products, fingerprinted with tlsdetect's own
  pcap engine (``SOURCES.md`` there names the product of each file);
* ``pcaps/*.pcap*`` with ``docs/captures/MANIFEST.json`` -- the project's own captures of real TLS stacks (the
  captures the manifest labels ``clean`` only: the interception demo's hellos are not a stack's own);
* ``docs/captures/STACKS.json`` if present (written by the evaluation-corpus script).

Every row names its source. Every hash is computed here from real lists or real captures, never typed in. The output
is deterministic: running the script twice gives byte-identical files. It prints the row count of each file.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tlsdetect import schema  # noqa: E402
from tlsdetect.fingerprint import ja3_string, ja4, md5_hex  # noqa: E402
from tlsdetect.readers.pcap.engine import iter_pcap  # noqa: E402
from tlsdetect.wire.tls import EXT_ALPN, EXT_SIGNATURE_ALGORITHMS, EXT_SUPPORTED_VERSIONS  # noqa: E402

#: mitmengine's mitm_type numbers (SOURCES.md legend); 0 is outside the legend and means "not given".
MITM_TYPES = {"0": "Unknown", "1": "Antivirus", "2": "FakeBrowser", "3": "Malware", "4": "Parental", "5": "Proxy"}

#: Interception-tool CA names listed in shared/knowledge/SOURCES.md (last paragraph): (product, field, regex, where
#: SOURCES.md says the wording comes from). Regexes are full-match, case-insensitive.
TOOL_CAS: tuple[tuple[str, str, str, str], ...] = (
    ("mitmproxy", "cn", "mitmproxy", "mitmproxy/certs.py"),
    ("mitmproxy", "o", "mitmproxy", "mitmproxy/certs.py"),
    ("Burp Suite", "cn", "PortSwigger CA", "Burp Suite vendor documentation"),
    ("Burp Suite", "o", "PortSwigger", "Burp Suite vendor documentation"),
    ("Fiddler", "cn", "DO_NOT_TRUST_FiddlerRoot", "Fiddler vendor documentation"),
    ("Charles", "cn", r"Charles Proxy CA.*", "Charles vendor documentation"),
    ("Charles", "o", r"XK72 Ltd", "Charles vendor documentation"),
    ("Zscaler", "cn", "Zscaler Root CA", "Zscaler vendor documentation"),
    ("Zscaler", "o", r"Zscaler Inc\.?", "Zscaler vendor documentation"),
    ("AVG", "cn", "AVG Web/Mail Shield Root", "AVG vendor documentation"),
    ("ESET", "cn", "ESET SSL Filter CA", "ESET vendor documentation"),
    ("Netskope", "cn", r"caadmin\.netskope\.com", "Netskope vendor documentation"),
    ("Netskope", "cn", r"ca\..*\.goskope\.com", "Netskope vendor documentation"),
)

#: Coarse stack families of application names: first rule whose regex finds a match wins, else ``other``.
#: ``malware`` keeps the C2/malware entries of FoxIO's mapping from reading as benign applications.
FAMILY_RULES: tuple[tuple[str, str], ...] = (
    ("malware", r"cobalt strike|sliver|havoc|icedid|qakbot|pikabot|darkgate|lumma"),
    ("chromium", r"chrom|electron|node-webkit|nwjs|cephtmlengine"),
    ("firefox", r"firefox|thunderbird|mozilla|postbox"),
    ("safari", r"safari|webkit"),
    ("python", r"python"),
    ("curl", r"curl"),
    ("go", r"golang"),
    ("java", r"java|eclipse|\bidea\b"),
    ("node", r"node\.js"),
    ("dotnet", r"dotnet|mono-sgen"),
    ("windows", r"wininet|winhttp|schannel"),
    ("openssl", r"openssl"),
)

#: (kind in the knowledge files, column of the connections table) of every fingerprint read from a capture;
#: ``ja3_string`` is the JA3 text, which carries the offered values (resemblance compares those).
HELLO_KINDS = (("ja3", "ja3"), ("ja3n", "ja3n"), ("ja4", "ja4"), ("ja3_string", "ja3_full"))

CSV_NAMES = (
    "interception_cas.csv",
    "interception_keys.csv",
    "product_fingerprints.csv",
    "applications.csv",
    "stack_fingerprints.csv",
)


# ---------------------------------------------------------------------------------------------------------------
# Provenance


def _md_table(text: str) -> list[dict[str, str]]:
    """Rows of every Markdown table in ``text`` (header row -> dicts; cells stripped of backticks)."""
    rows: list[dict[str, str]] = []
    header: list[str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip().strip("`").strip() for c in line.strip("|").split("|")]
        if header is None:
            header = cells
        elif all(set(c) <= set("-: ") for c in cells):
            continue
        else:
            rows.append(dict(zip(header, cells, strict=False)))
    return rows


def knowledge_sources(shared: Path) -> dict[str, dict[str, str]]:
    """file name -> {repository, path, commit, licence, ...} from shared/knowledge/SOURCES.md."""
    return {r["file"]: r for r in _md_table((shared / "knowledge" / "SOURCES.md").read_text()) if "file" in r}


def _cite(sources: dict[str, dict[str, str]], file: str, *, path: bool = True) -> str:
    s = sources[file]
    where = s["path"] if path else Path(s["path"]).name
    return f"{s['repository']} {where} @{s['commit'][:8]}"


# ---------------------------------------------------------------------------------------------------------------
# 1. interception CAs


def build_interception_cas(shared: Path, sources: dict[str, dict[str, str]]) -> pd.DataFrame:
    file = "chromium_ssl_error_assistant_mitm_software.csv"
    repo = sources[file]["repository"].split(" ")[0]  # "chromium (ssl_error_assistant.asciipb)" -> "chromium"
    cite = f"{repo} {Path(sources[file]['path']).name} @{sources[file]['commit'][:8]}"
    rows: list[tuple[str, str, str, str]] = []
    with (shared / "knowledge" / file).open(newline="") as fh:
        for rec in csv.DictReader(fh):
            for field, column in (("cn", "issuer_common_name_regex"), ("o", "issuer_organization_regex")):
                pattern = (rec[column] or "").strip()
                if pattern:
                    re.compile(pattern)
                    rows.append((rec["name"].strip(), field, pattern, cite))
    for product, field, pattern, where in TOOL_CAS:
        rows.append((product, field, pattern, f"{where} (per shared/knowledge/SOURCES.md)"))
    frame = pd.DataFrame(rows, columns=["product", "field", "pattern", "source"])
    return _dedupe(frame, ["product", "field", "pattern"])


# ---------------------------------------------------------------------------------------------------------------
# 2. interception keys


def build_interception_keys(shared: Path, sources: dict[str, dict[str, str]]) -> pd.DataFrame:
    file = "chromium_blocklist_interception_entries.csv"
    s = sources[file]
    folder = str(Path(s["path"]).parent)
    rows: list[tuple[str, str, str, str]] = []
    with (shared / "knowledge" / file).open(newline="") as fh:
        for rec in csv.DictReader(fh):
            name = rec["sha256_filename"].strip()
            digest = name.split(".")[0].lower()
            if not re.fullmatch(r"[0-9a-f]{64}", digest):
                raise ValueError(f"{file}: {name!r} does not name a SHA-256")
            kind = rec["kind"].strip()
            if kind not in ("cert", "spki"):
                raise ValueError(f"{file}: unknown kind {kind!r}")
            rows.append((rec["group"].strip(), digest, kind, f"{s['repository']} {folder}/{name} @{s['commit'][:8]}"))
    return _dedupe(pd.DataFrame(rows, columns=["product", "sha256", "kind", "source"]), ["product", "sha256", "kind"])


# ---------------------------------------------------------------------------------------------------------------
# 3. product fingerprints


def _hex_list(text: str) -> list[int]:
    return [int(v, 16) for v in text.split(",") if v]


def mitmengine_fingerprints(
    version: int, ciphers: Sequence[int], exts: Sequence[int], curves: Sequence[int], pfs: Sequence[int]
) -> list[tuple[str, str, str]]:
    """(kind, value, missing) of one mitmengine record: the JA3 text (the offered values, for resemblance), ja3,
    ja3n, and a full ja4 or a ``ja4_ab`` pattern.

    mitmengine keeps extension *types* only, so the JA4 parts that depend on extension *contents* are unknown:
    the version (when supported_versions 0x2b is offered), the ALPN characters (when ALPN 0x10 is offered) and
    the ``c`` hash (when signature_algorithms 0x0d is offered). Unknown characters of ``a`` are written ``?``
    and the ``c`` part is dropped: ``t12d1306??_8daaf6152771`` matches any JA4 whose first 23 characters agree
    with it, ``?`` matching any one character.
    """
    out = [
        ("ja3_string", ja3_string(version, ciphers, exts, curves, pfs), ""),
        ("ja3", md5_hex(ja3_string(version, ciphers, exts, curves, pfs)), ""),
        ("ja3n", md5_hex(ja3_string(version, ciphers, exts, curves, pfs, sort_extensions=True)), ""),
    ]
    full = ja4("t", version, ciphers, exts, None, (), ()).ja4
    missing = [
        name
        for ext, name in (
            (EXT_SUPPORTED_VERSIONS, "supported_versions_value"),
            (EXT_ALPN, "alpn_value"),
            (EXT_SIGNATURE_ALGORITHMS, "signature_algorithms"),
        )
        if ext in exts
    ]
    if not missing:
        out.append(("ja4", full, ""))
        return out
    a, b = full.split("_")[:2]
    if EXT_SUPPORTED_VERSIONS in exts:
        a = a[0] + "??" + a[3:]
    if EXT_ALPN in exts:
        a = a[:8] + "??"
    out.append(("ja4_ab", f"{a}_{b}", ";".join(missing)))
    return out


def _mitmengine_rows(
    shared: Path, sources: dict[str, dict[str, str]]
) -> tuple[list[tuple[str, ...]], int, dict[str, set[str]]]:
    """Fingerprint rows, records skipped, and product name -> types of every record (skipped ones too)."""
    file = "mitmengine_mitm.txt"
    cite = _cite(sources, file, path=False)
    rows: list[tuple[str, ...]] = []
    types: dict[str, set[str]] = {}
    skipped = 0
    for lineno, raw in enumerate((shared / "knowledge" / file).read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split("|")
        if len(parts) != 3:
            raise ValueError(f"{file}:{lineno}: expected 3 '|' fields")
        tls = parts[1].split(":")
        name, mitm_type = parts[2].split(":")[:2]
        version, ciphers, exts, curves, pfs = tls[:5]
        types.setdefault(name, set()).add(MITM_TYPES.get(mitm_type, "Unknown"))
        if not version or "*" in ":".join(tls[:5]):
            skipped += 1  # header-only or wildcard signature: no ClientHello to fingerprint
            continue
        product_type = MITM_TYPES.get(mitm_type, "Unknown")
        for kind, value, missing in mitmengine_fingerprints(
            int(version, 16), _hex_list(ciphers), _hex_list(exts), _hex_list(curves), _hex_list(pfs)
        ):
            rows.append((name, product_type, kind, value, missing, f"{cite} line {lineno}"))
    return rows, skipped, types


def interception_captures(shared: Path) -> list[tuple[Path, str]]:
    """(capture path, product) from shared/pcaps/interception/SOURCES.md, in table order."""
    folder = shared / "pcaps" / "interception"
    rows = _md_table((folder / "SOURCES.md").read_text())
    return [(folder / r["file"], r["product"]) for r in rows if r.get("file", "").endswith(".pcap")]


def _capture_commit(shared: Path) -> str:
    text = (shared / "pcaps" / "interception" / "SOURCES.md").read_text()
    m = re.search(r"(cloudflare/mitmengine)\b.*?commit ([0-9a-f]{40})", text, re.S)
    if m is None:
        raise ValueError("shared/pcaps/interception/SOURCES.md: repository and commit not found")
    return f"{m.group(1)} @{m.group(2)[:8]}"


def _read_capture(path: Path) -> pd.DataFrame:
    chunks = list(iter_pcap(path))
    return schema.concat(chunks) if chunks else pd.DataFrame()


def _vendor(name: str) -> str:
    return re.split(r"[\s/-]+", name.strip().lower())[0]


def _product_type_of(product: str, types: dict[str, set[str]]) -> str:
    """The one type mitmengine gives the same vendor (first word of the name, any record), else Unknown."""
    found = set().union(*(t for name, t in types.items() if _vendor(name) == _vendor(product))) - {"Unknown"}
    return found.pop() if len(found) == 1 else "Unknown"


def build_product_fingerprints(shared: Path, sources: dict[str, dict[str, str]]) -> tuple[pd.DataFrame, int]:
    rows, skipped, types = _mitmengine_rows(shared, sources)
    origin = _capture_commit(shared)
    for path, product in interception_captures(shared):
        df = _read_capture(path)
        product_type = _product_type_of(product, types)
        for kind, column in HELLO_KINDS:
            for value in sorted(df[column].dropna().unique()) if column in df.columns else []:
                rows.append(
                    (product, product_type, kind, str(value), "", f"shared/pcaps/interception/{path.name} ({origin})")
                )
    frame = pd.DataFrame(rows, columns=["product", "product_type", "kind", "value", "missing", "source"])
    return _dedupe(frame, ["product", "kind", "value"]), skipped


# ---------------------------------------------------------------------------------------------------------------
# 4. applications


def family_of(name: str) -> str:
    low = name.lower()
    for family, pattern in FAMILY_RULES:
        if re.search(pattern, low):
            return family
    return "other"


def build_applications(shared: Path, sources: dict[str, dict[str, str]]) -> pd.DataFrame:
    rows: list[tuple[str, str, str, str, str]] = []
    file = "salesforce_osx-nix-ja3.csv"
    cite = _cite(sources, file)
    with (shared / "knowledge" / file).open(newline="") as fh:
        for rec in csv.reader(fh):
            if len(rec) < 2 or not re.fullmatch(r"[0-9a-f]{32}", rec[0].strip()):
                continue  # the licence notice (one quoted multi-line cell) and blank lines
            app = rec[1].strip()
            rows.append((app, family_of(app), "ja3", rec[0].strip(), cite))
    file = "foxio_ja4plus-mapping.csv"
    cite = _cite(sources, file) + " (ja4 column)"
    with (shared / "knowledge" / file).open(newline="") as fh:
        for entry in csv.DictReader(fh):
            value = (entry.get("ja4") or "").strip()
            if not value:
                continue
            names = [(entry.get(c) or "").strip() for c in ("Application", "Library", "OS")]
            app = next((n for n in names if n), "")
            if not app:
                continue
            library = names[1]
            rows.append((app, family_of(f"{app} {library}"), "ja4", value, cite))
    frame = pd.DataFrame(rows, columns=["application", "family", "kind", "value", "source"])
    return _dedupe(frame, ["application", "kind", "value"])


# ---------------------------------------------------------------------------------------------------------------
# 5. stacks


#: ``stack`` of the hellos of the shared reference captures: clean stacks known by their offered values only.
REFERENCE_STACK = "reference capture"


def reference_hellos(shared: Path) -> list[tuple[str, str, str, str, str]]:
    """The JA3 text of every distinct hello of the shared reference captures (clean stacks: FoxIO, Arkime, s2n-tls).

    They tell resemblance which hellos clean software sends (an old OpenSSL client looks like many 2016
    interception products); ``version`` is the capture's file name, ``source`` its origin from SOURCES.md.
    """
    folder = shared / "pcaps" / "reference"
    if not (folder / "SOURCES.md").is_file():
        return []
    origins = {r["file here"]: r.get("source path", "") for r in _md_table((folder / "SOURCES.md").read_text())
               if "file here" in r}
    rows: list[tuple[str, str, str, str, str]] = []
    for name in sorted(origins):
        path = folder / name
        if not path.is_file():
            continue
        try:
            df = _read_capture(path)
        except Exception as exc:  # a capture the engine cannot read adds nothing; say so
            print(f"reference capture {name} skipped: {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        values = sorted(df["ja3_full"].dropna().unique()) if "ja3_full" in df.columns else []
        src = f"shared/pcaps/reference/{name} ({origins[name]})"
        rows.extend((REFERENCE_STACK, name, "ja3_string", str(v), src) for v in values if str(v))
    return rows


def build_stacks(repo: Path, shared: Path) -> pd.DataFrame:
    docs = repo / "docs" / "captures"
    manifest = json.loads((docs / "MANIFEST.json").read_text())
    generator = manifest.get("generator", "scripts/make_captures.py")
    pcaps = repo / manifest.get("captures_dir", "pcaps")
    rows: list[tuple[str, str, str, str, str]] = []
    for name, capture in sorted(manifest["captures"].items()):
        path = pcaps / name
        if not path.is_file() or capture.get("label", "clean") != "clean":
            continue
        df = _read_capture(path)
        by_ports = {(int(c["client_port"]), int(c["server_port"])): c for c in capture["connections"]}
        for rec in df.to_dict("records"):
            conn = by_ports.get((int(str(rec["client_port"])), int(str(rec["server_port"]))))
            if conn is None:
                continue
            for kind, column in HELLO_KINDS:
                value = rec.get(column)
                if isinstance(value, str) and value:
                    src = f"pcaps/{name} tcp_stream {conn['tcp_stream']} ({generator})"
                    rows.append((conn["stack"], conn["stack_version"], kind, value, src))
    stacks_json = docs / "STACKS.json"
    if stacks_json.is_file():
        for entry in json.loads(stacks_json.read_text()):
            for kind in ("ja3", "ja3n", "ja4"):
                value = entry.get(kind)
                if value:
                    part = str(entry.get("source") or "capture").removeprefix("pcap-")
                    src = f"docs/captures/STACKS.json ({part}.pcapng of scripts/make_eval_corpus.py)"
                    rows.append((str(entry["stack"]), str(entry.get("version", "")), kind, str(value), str(src)))
    rows.extend(reference_hellos(shared))
    frame = pd.DataFrame(rows, columns=["stack", "version", "kind", "value", "source"])
    keys = ["stack", "version", "kind", "value"]
    if frame.empty:
        return frame
    # one row per fingerprint of a stack version; its sources joined
    joined = frame.groupby(keys, sort=False)["source"].agg(lambda s: "; ".join(dict.fromkeys(s)))
    return joined.reset_index()


# ---------------------------------------------------------------------------------------------------------------


def _dedupe(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Keep the first row of every key (source order is meaningful: lookups return the first match)."""
    return frame.drop_duplicates(subset=keys, keep="first").reset_index(drop=True)


def to_csv_text(frame: pd.DataFrame) -> str:
    buf = io.StringIO()
    frame.to_csv(buf, index=False, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    return buf.getvalue()


def build(shared: Path, out: Path, repo: Path = ROOT) -> dict[str, int]:
    """Write every CSV into ``out``; return rows per file."""
    if not (shared / "knowledge" / "SOURCES.md").is_file():
        raise FileNotFoundError(f"{shared}/knowledge/SOURCES.md not found (pass --shared)")
    sources = knowledge_sources(shared)
    products, skipped = build_product_fingerprints(shared, sources)
    frames = {
        "interception_cas.csv": build_interception_cas(shared, sources),
        "interception_keys.csv": build_interception_keys(shared, sources),
        "product_fingerprints.csv": products,
        "applications.csv": build_applications(shared, sources),
        "stack_fingerprints.csv": build_stacks(repo, shared),
    }
    out.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    for name in CSV_NAMES:
        frame = frames[name]
        if frame["source"].fillna("").eq("").any():
            raise ValueError(f"{name}: a row without a source")
        text = to_csv_text(frame)
        target = out / name
        if not target.is_file() or target.read_text() != text:
            target.write_text(text)
        counts[name] = len(frame)
    counts["mitmengine records skipped (wildcard/header-only)"] = skipped
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared", help="the shared/ folder")
    parser.add_argument("--out", type=Path, default=ROOT / "tlsdetect" / "detect" / "knowledge", help="output folder")
    args = parser.parse_args(argv)
    counts = build(args.shared.resolve(), args.out)
    for name, n in counts.items():
        print(f"{n:6d}  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
