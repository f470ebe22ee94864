# The QUIC Initial kernel (_quic_crypto.c, linked with libcrypto); typed for mypy.
def open_initial(
    datagram: bytes, start: int, pn_offset: int, end: int, salt: bytes, prefix: bytes, cid: bytes, server: bool, /
) -> tuple[int, bytes] | None: ...
