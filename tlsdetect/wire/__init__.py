"""Bytes to handshake values, no pandas: TLS record and hello parsers, their numpy batch twins."""
