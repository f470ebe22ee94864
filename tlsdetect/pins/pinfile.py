"""tlsdetect's own pin-set format: one line per domain and per pin, with the backup pin marked.

The other formats cannot say which pin is the backup, and some cannot give an expiry; this one
says both, so a policy kept in a repository can be linted with nothing left to guess::

    tlsdetect-pins 1
    # domain NAME [subdomains] [expires YYYY-MM-DD]
    domain example.com subdomains expires 2027-06-30
    pin ca   sha256/r/mIkG3eEpVdm+u/ko/cwxzOMo1bk4TyHIlByibiA5E=
    pin leaf 47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU= backup
    domain static.example.com

The first line that is not blank or a comment is the magic ``tlsdetect-pins 1``. ``pin KIND VALUE
[backup]`` lines belong to the ``domain`` line above them; KIND is ``leaf``, ``ca`` or ``any``;
VALUE is the SPKI SHA-256 in base64, with or without OkHttp's ``sha256/``. A ``domain`` with no pin
lines is a rule without pins (it exempts that name from a broader rule's pins).
"""

from __future__ import annotations

import datetime as dt

from tlsdetect.pins.rows import Collected, PolicyError, normalise_domain, parse_date, strip_sha256

MAGIC = "tlsdetect-pins"
VERSION = "1"
FORMAT = "tlsdetect"


def _domain_line(words: list[str], path: str, n: int) -> tuple[str, bool, dt.date | None]:
    if len(words) < 2:
        raise PolicyError(path, n, "'domain' needs a name")
    name, subs, expiry = normalise_domain(words[1], path, n), False, None
    rest = words[2:]
    while rest:
        word = rest.pop(0)
        if word == "subdomains" and not subs:
            subs = True
        elif word == "expires" and expiry is None and rest:
            expiry = parse_date(rest.pop(0), path, n)
        else:
            raise PolicyError(path, n, f"unexpected {word[:40]!r} on a domain line "
                                       "(domain NAME [subdomains] [expires YYYY-MM-DD])")
    return name, subs, expiry


def read(path: str, data: bytes) -> Collected:
    """The rows of a ``tlsdetect-pins`` file; any line that fits no rule is a one-line error."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError(path, data[:exc.start].count(b"\n") + 1, "not UTF-8 text") from None
    out = Collected()
    seen_magic = False
    rule: tuple[str, bool, dt.date | None, int] | None = None
    pins_in_rule = 0

    def close() -> None:
        if rule is not None and pins_in_rule == 0:
            out.pin(rule[0], rule[1], None, None, rule[2], None, path, rule[3], FORMAT)

    for n, raw in enumerate(text.splitlines(), start=1):
        words = raw.split("#", 1)[0].split()
        if not words:
            continue
        if not seen_magic:
            if words != [MAGIC, VERSION]:
                raise PolicyError(path, n, f"first line must be '{MAGIC} {VERSION}'")
            seen_magic = True
        elif words[0] == "domain":
            close()
            name, subs, expiry = _domain_line(words, path, n)
            rule, pins_in_rule = (name, subs, expiry, n), 0
        elif words[0] == "pin":
            if rule is None:
                raise PolicyError(path, n, "'pin' before any 'domain' line")
            if len(words) not in (3, 4) or words[1] not in ("leaf", "ca", "any") or (
                    len(words) == 4 and words[3] != "backup"):
                raise PolicyError(path, n, "expected 'pin leaf|ca|any VALUE [backup]'")
            out.pin(rule[0], rule[1], strip_sha256(words[2]), words[1], rule[2], len(words) == 4,
                    path, n, FORMAT)
            pins_in_rule += 1
        else:
            raise PolicyError(path, n, f"unknown keyword {words[0][:40]!r} (expected 'domain' or 'pin')")
    if not seen_magic:
        raise PolicyError(path, None, f"empty: no '{MAGIC} {VERSION}' line")
    close()
    return out
