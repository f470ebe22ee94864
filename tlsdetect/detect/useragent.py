"""User-Agent -> TLS stack family, so a claimed client can be compared with its ClientHello.

The family names the TLS stack a client normally brings, not the product: every Chromium-based
browser (Chrome, Edge, Opera, Brave, headless Chromium) is ``chromium`` because they share
BoringSSL's hello; ``python`` covers requests/urllib/aiohttp/httpx (OpenSSL through CPython).
Stack families of fingerprints (knowledge tables, the project's own measured stacks) use the
same words, so the two can be compared directly.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

__all__ = ["FAMILIES", "family_of_stack", "ua_family"]

#: First match wins: Chromium-based browsers also say "Safari", Edge says "Chrome".
_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("firefox", re.compile(r"\b(?:Firefox|FxiOS)/", re.I)),
    ("chromium", re.compile(r"\b(?:Chrome|Chromium|HeadlessChrome|CriOS|Edg|OPR|Brave)/", re.I)),
    ("safari", re.compile(r"\bVersion/[\d.]+.*\bSafari/|\bAppleWebKit/.*\bMobile/", re.I)),
    ("curl", re.compile(r"^curl/", re.I)),
    ("wget", re.compile(r"^Wget/", re.I)),
    ("python", re.compile(r"python-requests|Python-urllib|aiohttp|python-httpx|^python/|urllib3", re.I)),
    ("go", re.compile(r"Go-http-client|^Go\b", re.I)),
    ("java", re.compile(r"^Java/|okhttp|Apache-HttpClient|Jetty", re.I)),
    ("node", re.compile(r"^node|axios/|undici|node-fetch|got \(", re.I)),
    ("openssl", re.compile(r"^openssl", re.I)),
    ("gnutls", re.compile(r"gnutls", re.I)),
    ("envoy", re.compile(r"^envoy", re.I)),
)

FAMILIES = tuple(name for name, _ in _RULES)

#: Stack names of the project's capture scripts and knowledge tables -> family.
_STACK_FAMILY = {
    "chrome": "chromium", "chromium": "chromium", "chromium browser": "chromium", "edge": "chromium",
    "firefox": "firefox", "mozilla firefox": "firefox", "safari": "safari",
    "curl": "curl", "wget": "wget", "python": "python", "python-requests": "python",
    "go": "go", "java": "java", "node": "node", "nodejs": "node",
    "openssl": "openssl", "gnutls": "gnutls", "gnutls-cli": "gnutls", "envoy": "envoy",
}


def _one(ua: str) -> str | None:
    for name, rule in _RULES:
        if rule.search(ua):
            return name
    return None


def ua_family(user_agents: pd.Series) -> pd.Series:
    """Family of each User-Agent (``<NA>`` when missing or not recognised), computed per unique value."""
    codes, uniques = pd.factorize(user_agents, use_na_sentinel=True)
    fams = [_one(str(u)) for u in uniques]
    cats = sorted({f for f in fams if f is not None})
    pos = {f: i for i, f in enumerate(cats)}
    fam_codes = np.array([pos[f] if f is not None else -1 for f in fams] + [-1], dtype=np.int64)
    # a categorical: a few families over many rows cost one small code per row
    return pd.Series(pd.Categorical.from_codes(fam_codes[codes], categories=pd.Index(cats, dtype=object)),
                     index=user_agents.index, name="ua_family")


def family_of_stack(name: str | None) -> str | None:
    """Family of a stack or application name from a knowledge table (``None`` when unknown)."""
    if not name:
        return None
    key = name.strip().lower()
    if key in _STACK_FAMILY:
        return _STACK_FAMILY[key]
    first = key.split()[0] if key.split() else key
    return _STACK_FAMILY.get(first) or _one(name)
