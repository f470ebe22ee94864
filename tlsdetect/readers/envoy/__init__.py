"""Envoy access logs (JSON lines, or text given the configured format string) to the connections table.

What is read
------------
* **JSON access logs** (``json_format``) with any key names. The usual ones are mapped by default:
  the keys of the project's sample configuration (``downstream_remote_address``, ``ja3``, ``ja4``,
  ``connection_id``, ...) and, for every supported command operator, the names an operator derives
  from it: ``downstream_remote_address``, ``DOWNSTREAM_REMOTE_ADDRESS``, ``%DOWNSTREAM_REMOTE_ADDRESS%``
  and ``downstreamRemoteAddress``. ``mapping={json_key: column}`` adds custom names; a custom key wins
  over a default key for the same column. Columns a mapping may name: the connections-table columns
  below plus ``client_address``/``server_address`` (``ip:port``, split here), ``peer_uri_san``,
  ``method``, ``response_code`` and ``access_log_type``.
* **Text access logs** given the Envoy format string (``text_format``): the ``%OPERATOR%`` template
  becomes one RE2 regex (literal text escaped, one group per operator), applied to all lines at once;
  ``-`` means missing.

=====================================  ==========================================
operator                               column
=====================================  ==========================================
``%START_TIME%``                       ``ts`` (UTC; ISO 8601, or epoch seconds)
``%DOWNSTREAM_REMOTE_ADDRESS%``        ``client_ip``, ``client_port`` (``[::1]:443`` too)
``%DOWNSTREAM_LOCAL_ADDRESS%``         ``server_ip``, ``server_port``
``%REQUESTED_SERVER_NAME%``            ``sni``
``%DOWNSTREAM_TLS_VERSION%``           ``tls_version`` (``TLSv1.2``; Envoy's ``TLSv1`` -> ``TLSv1.0``);
                                       TLS 1.3 also gives ``sh_selected_version``
``%DOWNSTREAM_TLS_CIPHER%``            ``sh_cipher``: the OpenSSL name Envoy logs
                                       (``ECDHE-RSA-AES128-GCM-SHA256``) as its IANA number; a name
                                       that is no known suite is missing
``%TLS_JA3_FINGERPRINT%``              ``ja3``
``%TLS_JA4_FINGERPRINT%``              ``ja4``
``%DOWNSTREAM_PEER_SUBJECT%``          ``peer_subject``
``%DOWNSTREAM_PEER_ISSUER%``           ``peer_issuer`` (and ``peer_issuer_key``)
``%DOWNSTREAM_PEER_FINGERPRINT_256%``  ``peer_cert_sha256``
``%DOWNSTREAM_PEER_URI_SAN%``          ``peer_uri_san`` (extra column; SPIFFE ID source)
``%DOWNSTREAM_PEER_CERT%``             ``peer_issuer_akid``, ``peer_spki_sha256`` (see below)
``%DOWNSTREAM_PEER_SERIAL%``           ``peer_serial`` (lowercase hex, colons dropped)
``%DOWNSTREAM_PEER_CERT_V_START%``     ``peer_not_before`` (ISO 8601 or epoch seconds; a value that does
                                       not parse is missing, counted in ``reasons``)
``%DOWNSTREAM_PEER_CERT_V_END%``       ``peer_not_after`` (as ``peer_not_before``)
``%UPSTREAM_PEER_SUBJECT%``            ``server_subject``
``%UPSTREAM_PEER_ISSUER%``             ``server_issuer`` (and ``server_issuer_key``)
``%UPSTREAM_PEER_FINGERPRINT_256%``    ``server_cert_sha256``
``%UPSTREAM_PEER_CERT%``               ``server_issuer_akid``, ``server_spki_sha256`` (see below)
``%CONNECTION_ID%``                    ``conn_id``
``%REQ(USER-AGENT)%``                  ``user_agent``
=====================================  ==========================================

``server_*`` here is the certificate of the *upstream* connection (Envoy -> backend): the one an
interceptor between Envoy and its backend would replace.

Not read: ``%UPSTREAM_TLS_VERSION%``/``%UPSTREAM_TLS_CIPHER%`` describe Envoy's own handshake with
its backend, not the downstream one whose hello the row fingerprints. Resumption is not logged:
``%DOWNSTREAM_TLS_SESSION_ID%`` is the session's id, the same on a full handshake and on the
connections that resume it, so ``resumed`` stays missing (as do the flights and ``sh_version``).

``%DOWNSTREAM_PEER_CERT%``/``%UPSTREAM_PEER_CERT%`` (JSON keys ``downstream_peer_cert``/
``upstream_peer_cert`` and the other derived names; raw columns ``peer_cert_pem``/
``server_cert_pem`` for ``mapping``) log the leaf certificate as URL-encoded PEM. It gives
``peer_issuer_akid``/``server_issuer_akid`` (the leaf's Authority Key Identifier, lowercase hex: which
key signed it), ``peer_spki_sha256``/``server_spki_sha256`` (the leaf's SPKI pin) and, where the line
lacks them, the ``*_subject``, ``*_issuer`` and
``*_cert_sha256`` of the same side. Each distinct PEM is parsed once. A PEM that does not parse
leaves those cells missing and the row kept: it is counted in ``stats.reasons["bad certificate"]``
(not a bad line) with one warning per block in ``stats.warnings`` naming the first line.

Rows
----
An HTTP connection manager logs one line per request; a listener-level access log logs one line per
connection, including failed handshakes (no HTTP fields). Every line is a row by default and the
extra column ``envoy_line`` says ``http`` or ``listener``. With ``collapse=True`` all lines of one
connection (same ``conn_id`` and 4-tuple; Envoy restarts its connection ids at 0) become one row: the
earliest ``ts``, the first non-missing value of every other column, ``envoy_line`` = ``http`` when
any line was, and the number of HTTP lines in the extra column ``http_requests``.

``client_id`` is the first ``spiffe://`` URI of ``%DOWNSTREAM_PEER_URI_SAN%``, else the peer
subject, else the client IP. ``source`` is ``envoy``, ``transport`` is ``tcp``.

Fingerprints: Envoy's values differ from the spec
-------------------------------------------------
Envoy's JA3 keeps GREASE values in the supported_groups (elliptic curves) field, and its JA4 keeps
GREASE values in the signature_algorithms list hashed into JA4's third part (``c``). So:

* a ClientHello with a GREASE value in supported_groups (Chrome, Edge and every Chromium browser,
  other BoringSSL clients that enable GREASE, uTLS mimics of them) gives an Envoy JA3 that differs
  from the spec JA3 of the same hello; a hello without one (OpenSSL-based clients such as curl,
  wget and Python; Go's crypto/tls; Java) gives the spec value. The JA3 *string* is not logged;
* a ClientHello with a GREASE value in signature_algorithms (Chrome >= 152) gives an Envoy JA4
  whose ``c`` hash differs from the spec JA4; its ``a`` part (counts exclude GREASE either way)
  and ``b`` part are equal. Every other hello gives the spec JA4.

A hash cannot be turned back into its list, so these values cannot be normalised from the log alone.
They are carried as they are with ``fingerprint_origin`` = ``envoy``, and scoring must compare them
with fingerprints of the same origin (or recompute from hello lists when another source has them).

Bad input
---------
A line that does not parse (broken JSON, not an object, a value of the wrong shape, a text line that
does not match the format, a bad address, port or timestamp) goes to ``dead_letter`` with its file,
line number and reason; it is counted and never crashes a run. A file whose first lines hold no
Envoy record at all is a :class:`~tlsdetect.readers.logs.LogFormatError`.

Connection ids are per Envoy process and repeat after a restart (and Envoy 1.40 logged id 0 both for a
connection closed before its handshake and for the next, real one), so ``collapse`` keys on the id
*and* the 4-tuple.

Modules
-------
:mod:`.read` (``read_envoy``, ``parse_envoy_lines``), :mod:`.keys` (the operator and JSON key map),
:mod:`.json` and :mod:`.text` (one block of lines to raw columns), :mod:`.chunk` (blocks and their
lines), :mod:`.columns` (addresses, ports, timestamps), :mod:`.certs` (logged PEM leaves),
:mod:`.finish` (derived columns, collapse). JSON is parsed in blocks by Arrow's multi-threaded
reader; mapping, address splitting and timestamp parsing are Arrow kernels over whole columns.
"""

from tlsdetect.readers.envoy.keys import OPERATORS, default_mapping
from tlsdetect.readers.envoy.read import parse_envoy_lines, read_envoy
from tlsdetect.readers.envoy.text import compile_text_format

__all__ = ["OPERATORS", "compile_text_format", "default_mapping", "parse_envoy_lines", "read_envoy"]
