# The QUIC Initial kernel (_quic_crypto.c, linked with libcrypto); typed for mypy.
from collections.abc import Sequence
from typing import Any

def open_initial(
    datagram: bytes, start: int, pn_offset: int, end: int, salt: bytes, prefix: bytes, cid: bytes, server: bool, /
) -> tuple[int, bytes] | None: ...
def initial_batch(
    buf: Any, payload: Any, plen: Any, ts: Any, flow: Any, fwd: Any, nflows: int,
    versions: Sequence[tuple[int, bytes, bytes, int]], /,
) -> tuple[bytes, bytes]: ...
def transport_parameters(hello_body: Any, /) -> str | None: ...  # any buffer
