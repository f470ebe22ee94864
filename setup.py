"""The compiled capture core as an optional extension (pyproject.toml holds everything else).

``optional=True``: a machine without a C compiler or Python headers installs tlsdetect anyway and
runs the numpy core (``tlsdetect.readers.pcap.ccore`` says which core runs).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "tlsdetect.readers.pcap._ccore",
            sources=["tlsdetect/readers/pcap/_ccore.c"],
            extra_compile_args=["-O2", "-std=c99", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        )
    ],
)
