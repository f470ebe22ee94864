# tlsdetect: detect TLS interception from ClientHello fingerprints and certificate issuers.
#
#   docker build -t tlsdetect .
#   docker run --rm -p 8080:8080 -v "$PWD/baselines/sample:/baseline:ro" tlsdetect \
#       serve --baseline /baseline --host 0.0.0.0 --port 8080
#
# Two stages: the first builds a virtual environment with tlsdetect and its serve extra, the
# second copies only that venv onto the same slim Python image and runs as an unprivileged user.
# CI lints this file with hadolint and runs the install step below on the plain machine
# (tests/test_dockerfile.py), so keep that step a single `pip install` line.

ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV VENV=/opt/tlsdetect \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv "$VENV"
COPY pyproject.toml README.md ./
COPY tlsdetect ./tlsdetect
# uvloop and httptools: uvicorn's fast event loop and HTTP parser (several times the lookups per second)
RUN "$VENV/bin/pip" install --no-cache-dir ".[serve]" "uvloop==0.23.0" "httptools==0.9.0"

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="tlsdetect" \
      org.opencontainers.image.description="Detect TLS interception from ClientHello fingerprints and certificate issuers" \
      org.opencontainers.image.licenses="BSD-3-Clause"
RUN groupadd --system --gid 10001 tlsdetect \
    && useradd --system --uid 10001 --gid tlsdetect --no-create-home --shell /usr/sbin/nologin tlsdetect
COPY --from=build /opt/tlsdetect /opt/tlsdetect
ENV PATH=/opt/tlsdetect/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /data
USER 10001:10001
EXPOSE 8080
# Healthy when `serve` answers /healthz on its --port (8080 by default); other commands (stream, score)
# have no HTTP endpoint to probe and count as healthy while they run.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request as u; a = open('/proc/1/cmdline', 'rb').read().split(b'\\0'); 'serve' in [x.decode() for x in a] or sys.exit(0); p = a[a.index(b'--port') + 1].decode() if b'--port' in a else '8080'; u.urlopen('http://127.0.0.1:' + p + '/healthz', timeout=4)"]
ENTRYPOINT ["tlsdetect"]
CMD ["--help"]
