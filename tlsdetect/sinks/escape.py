"""Text off the wire made safe for text outputs: invisible and control characters as visible escapes.

An SNI, a certificate DN, an ALPN name, a User-Agent or a client id is chosen by whoever sent it. Written
raw, ``ESC[2J`` clears the analyst's terminal, an OSC sequence retitles it, a newline forges a row, and a
bidi override (U+202E) or a zero-width character makes one name look like another. The table, CSV, CEF
and syslog outputs therefore pass every text value through :func:`escape_text` (one rule for all of
them; each format then applies its own quoting on top). JSON lines, ECS and Parquet keep the exact value:
their formats escape it already.

The escape, reversible by :func:`unescape_text`:

* characters of the Unicode categories Cc (C0, DEL, C1), Cf (bidi controls, zero-width, BOM, soft hyphen,
  tag characters), Zl and Zp (U+2028/U+2029) and Cs (lone surrogates) become ``\\x{HEX}``: the code
  point in lower-case hex, at least two digits (ESC is ``\\x{1b}``, RLO ``\\x{202e}``);
* with ``formula=True`` (CSV), a leading ``=``, ``+``, ``-`` or ``@`` is escaped the same way
  (``\\x{3d}...``): a spreadsheet then shows the text instead of running it as a formula (OWASP's CSV
  injection advice, with an escape in place of its ``'`` prefix so the value stays recoverable);
* a backslash is escaped (``\\x{5c}``) only where it would read as the start of an escape: before
  ``x{``. The braces are what keeps every other backslash as it is: RFC 4514 names (``O=Example\\, Inc``),
  JSON text (``\\"``, ``\\u00e9``), Python reprs of lists and the pcap reader's ``\\xff`` for a raw byte
  read as before, and never collide with this escape.

:func:`escape_series` does a column once per distinct value, and not at all when no value needs it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pandas only where a column is escaped: the CLI's stderr lines need just the text escape
    import pandas as pd

__all__ = ["FORMULA_START", "UNSAFE", "escape_frame", "escape_series", "escape_text", "unescape_text"]

#: Every character of the categories Cc, Cf, Zl, Zp and Cs (Unicode 14, Python 3.11); the test checks it
#: against :mod:`unicodedata`, so a newer Unicode with more format characters fails there, not silently.
UNSAFE = (
    "\x00-\x1f\x7f-\x9f\xad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b-\u200f"
    "\u2028-\u202e\u2060-\u2064\u2066-\u206f\ud800-\udfff\ufeff\ufff9-\ufffb\U000110bd\U000110cd"
    "\U00013430-\U00013438\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f"
)
#: What a spreadsheet reads as the start of a formula (tab and CR are in :data:`UNSAFE` already).
FORMULA_START = "=+-@"

_UNSAFE = re.compile(f"[{UNSAFE}]")
_TOKEN = re.compile(f"\\\\(?=x{{)|[{UNSAFE}]")
_FORMULA = re.compile(f"[{re.escape(FORMULA_START)}]")
_ESCAPE = re.compile(r"\\x\{([0-9a-f]{2,6})\}")


def _code(ch: str) -> str:
    return f"\\x{{{ord(ch):02x}}}"


def _token(m: re.Match[str]) -> str:
    return _code(m.group())


def escape_text(text: str, *, formula: bool = False) -> str:
    """``text`` with unsafe characters as visible escapes (see the module docstring); unchanged when clean."""
    lead = formula and _FORMULA.match(text) is not None
    if not lead and _UNSAFE.search(text) is None and "\\x{" not in text:
        return text
    body = _TOKEN.sub(_token, text[1:] if lead else text)
    return _code(text[0]) + body if lead else body


def unescape_text(text: str) -> str:
    """The value :func:`escape_text` was given (either setting of ``formula``)."""

    def one(m: re.Match[str]) -> str:
        n = int(m.group(1), 16)
        return chr(n) if n <= 0x10FFFF else m.group()

    return _ESCAPE.sub(one, text)


def _needs(text: str, formula: bool) -> bool:
    return escape_text(text, formula=formula) != text


def escape_series(values: pd.Series, *, formula: bool = False) -> pd.Series:
    """The text values of a column escaped, once per distinct value; other values (numbers, lists,
    missing) as they are. The same object comes back when nothing needed escaping."""
    import pandas as pd
    if isinstance(values.dtype, pd.CategoricalDtype):
        cats = list(values.cat.categories)
        new = [escape_text(c, formula=formula) if isinstance(c, str) else c for c in cats]
        if all(a is b for a, b in zip(cats, new, strict=True)):
            return values
        return values.cat.rename_categories(new)  # the escape is one-to-one: no two categories merge
    if not (values.dtype == object or isinstance(values.dtype, pd.StringDtype)):
        return values
    present = values.dropna()
    try:
        distinct = pd.unique(present)
    except TypeError:  # unhashable cells (lists): a cell at a time, on the rare frame that has them
        distinct = None
    if distinct is None:
        return values.map(lambda v: escape_text(v, formula=formula) if isinstance(v, str) else v)
    changed = {v: escape_text(v, formula=formula) for v in distinct if isinstance(v, str) and _needs(v, formula)}
    if not changed:
        return values
    # by position in object arrays: a dict or Index of the raw texts would be inferred as Arrow strings,
    # which cannot hold a lone surrogate (a Zeek or Suricata byte decoded with surrogateescape)
    import numpy as np

    keys = np.empty(len(changed), dtype=object)
    keys[:] = list(changed)
    texts = np.empty(len(changed), dtype=object)
    texts[:] = list(changed.values())
    arr = values.to_numpy(dtype=object, copy=True)
    at = pd.Index(keys, dtype=object).get_indexer(pd.Index(arr, dtype=object))
    hit = at >= 0
    arr[hit] = texts[at[hit]]
    return pd.Series(arr, index=values.index, name=values.name, dtype=values.dtype)


def escape_frame(df: pd.DataFrame, *, formula: bool = False) -> pd.DataFrame:
    """Every text column of ``df`` through :func:`escape_series`; ``df`` itself when none changed."""
    cols: dict[Any, pd.Series] = {}
    for col in df.columns:
        old = df[col]
        new = escape_series(old, formula=formula)
        if new is not old:
            cols[col] = new
    if not cols:
        return df
    out = df.copy()
    for col, new in cols.items():
        out[col] = new
    return out
