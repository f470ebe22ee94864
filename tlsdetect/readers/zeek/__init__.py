"""Zeek ``ssl.log`` joined with ``x509.log`` (and optionally ``conn.log``) into the connections table.

Both of Zeek's writers are read: TSV (the ``#separator``/``#fields``/``#types`` header, ``\\xNN`` and
``\\\\`` escapes, vectors split on ``#set_separator``) and JSON lines; plain or gzip-rotated; files or
directories of them. Lines that do not parse go to the :class:`~tlsdetect.readers.logs.DeadLetter`
with file, line number and reason. DNs are kept as Zeek prints them (RFC 2253-like, ``\\,`` inside a
value).

Modules: :mod:`.read` (the entry point), :mod:`.tsv` and :mod:`.tsv_disk` (the TSV writer's logs,
in memory and big files from disk), :mod:`.json` (its JSON writer's), :mod:`.values` (typing and
unescaping shared by both), :mod:`.join` (x509 and conn joins), :mod:`.mapping` (ssl.log fields to
table columns), :mod:`.fields` (what they share).
"""

from tlsdetect.readers.zeek.read import read_zeek

__all__ = ["read_zeek"]
