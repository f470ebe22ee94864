"""The compiled capture core as an optional extension (pyproject.toml holds everything else).

``optional=True``: a machine without a C compiler or Python headers installs tlsdetect anyway and
runs the numpy core (``tlsdetect.readers.pcap.ccore`` says which core runs); likewise without
libcrypto's headers the QUIC kernel is not built and ``cryptography`` opens the Initials.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "tlsdetect.readers.pcap._ccore",
            sources=["tlsdetect/readers/pcap/_ccore.c"],
            extra_compile_args=["-O2", "-std=c99", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        ),
        # OTLP logs exports read into columns (issue 22); without it protobuf reads every export.
        Extension(
            "tlsdetect.readers.envoy._pushwire",
            sources=["tlsdetect/readers/envoy/_pushwire.c"],
            extra_compile_args=["-O2", "-std=c99", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        ),
        # QUIC Initial unprotection with libcrypto (Debian: libssl-dev); without it the
        # `cryptography` path of tlsdetect.wire.quic_initial runs.
        Extension(
            "tlsdetect.wire._quic_crypto",
            sources=["tlsdetect/wire/_quic_crypto.c"],
            libraries=["crypto"],
            extra_compile_args=["-O2", "-std=c99", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        ),
    ],
)
