"""Protocol version numbers as the names the ``tls_version`` column uses (``0x0304`` -> ``TLSv1.3``).

One table for the readers that name a negotiated version and for the server profiles that learn it, so a
version read from a capture and one learned in a baseline compare as equal text.
"""

from __future__ import annotations

__all__ = ["VERSION_NAMES", "version_name"]

VERSION_NAMES = {
    0x0002: "SSLv2",
    0x0300: "SSLv3",
    0x0301: "TLSv1.0",
    0x0302: "TLSv1.1",
    0x0303: "TLSv1.2",
    0x0304: "TLSv1.3",
    0xFEFF: "DTLSv1.0",
    0xFEFD: "DTLSv1.2",
    0xFEFC: "DTLSv1.3",
}


def version_name(version: int) -> str:
    """The version's name, else its number as ``0x....`` (a value no standard defines stays visible)."""
    return VERSION_NAMES.get(int(version), f"0x{int(version):04x}")
