# tlsdetect: detect TLS interception from ClientHello fingerprints and certificate issuers.
#
#   docker build -t tlsdetect .
#   docker run --rm -p 8080:8080 -v "$PWD/baselines/sample:/baseline:ro" tlsdetect serve --baseline /baseline
#
# Two stages: the first builds a virtual environment with tlsdetect and its serve extra, the
# second copies only that venv onto the same slim Python image and runs as an unprivileged user.
# CI lints this file with hadolint and runs the install step below on the plain machine
# (tests/test_dockerfile.py), so keep that step a single `pip install` line. Every version it
# installs is pinned in constraints/docker.txt (its header says how to refresh it).

ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# PIP_CONSTRAINT also pins the build backend pip installs in its isolated build environment.
ENV VENV=/opt/tlsdetect \
    PIP_CONSTRAINT=constraints/docker.txt \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv "$VENV"
COPY constraints/docker.txt ./constraints/
COPY pyproject.toml README.md ./
COPY tlsdetect ./tlsdetect
# uvloop and httptools: uvicorn's fast event loop and HTTP parser (several times the lookups per second)
RUN "$VENV/bin/pip" install --no-cache-dir --constraint constraints/docker.txt ".[serve]" "uvloop" "httptools"

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="tlsdetect" \
      org.opencontainers.image.description="Detect TLS interception from ClientHello fingerprints and certificate issuers" \
      org.opencontainers.image.licenses="BSD-3-Clause"
# /data (the working directory) and /state (stream's --state) belong to the runtime user, so a fresh
# named volume mounted there starts writable (Docker copies the image's owner into a new volume).
RUN groupadd --system --gid 10001 tlsdetect \
    && useradd --system --uid 10001 --gid tlsdetect --no-create-home --shell /usr/sbin/nologin tlsdetect \
    && mkdir -p /data /state \
    && chown 10001:10001 /data /state
COPY --from=build /opt/tlsdetect /opt/tlsdetect
# TLSDETECT_HOST: `serve` listens on every interface, so a published port (-p 8080:8080) reaches it.
ENV PATH=/opt/tlsdetect/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TLSDETECT_HOST=0.0.0.0
WORKDIR /data
USER 10001:10001
EXPOSE 8080
# tlsdetect/healthcheck.py reads PID 1's command line: `serve` is probed on /healthz where a published
# port reaches it (unhealthy on a loopback-only --host), `stream --metrics-port` on /metrics, others
# have nothing to probe.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-m", "tlsdetect.healthcheck"]
ENTRYPOINT ["tlsdetect"]
CMD ["--help"]
