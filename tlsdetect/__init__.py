"""tlsdetect: find TLS interception from ClientHello fingerprints and certificate issuers."""

__version__ = "0.1.0"
