# Sésame image: the wheel (with the generated stubs) built by `make wheel`, SoftHSM2 and redis-server for
# the embedded development defaults, running as a non-root user. The image is production by default
# (SESAME_ENV=production): it refuses to start until it is given SESAME_REDIS_URL, the SESAME_PKCS11_* /
# SESAME_HSM_* settings of its HSM, SESAME_SMS_PROVIDERS (kannel, smpp, in failover order) with their settings, and (mounted read-only) the
# mTLS files and the caller policy named by SESAME_TLS_CERT_FILE, SESAME_TLS_KEY_FILE,
# SESAME_TLS_CLIENT_CA_FILE and SESAME_AUTHZ_POLICY_FILE (docs/operations.md, "Transport security and
# callers"). Development (embedded Redis, dev token, codes in a file) only when asked for:
# `docker run -e SESAME_ENV=development ...`. No Docker engine runs where the tests run: the tests check this
# file and .dockerignore, and run `sesame serve` with this image's ENV, but never build the image.

FROM python:3.11-slim-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends make && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml Makefile README.md requirements.lock requirements-dev.lock ./
COPY proto ./proto
COPY server ./server
COPY hsm ./hsm
COPY clients ./clients
# The same target the packaging test exercises: venv (from the dev lock, hashes checked), stubs from proto/,
# then the wheel.
RUN make wheel

FROM python:3.11-slim-bookworm
RUN apt-get update \
    && apt-get install -y --no-install-recommends softhsm2 redis-server \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --create-home --home-dir /var/lib/sesame --uid 10001 sesame
# The runtime lock only (no grpcio-tools, pytest, mypy, ruff...), every file checked against its hash; then
# the wheel alone, which resolves nothing.
COPY --from=build /src/dist/*.whl /src/requirements.lock /tmp/
RUN pip install --no-cache-dir --require-hashes -r /tmp/requirements.lock \
    && pip install --no-cache-dir --no-deps /tmp/*.whl \
    && rm /tmp/*.whl /tmp/requirements.lock
USER sesame
WORKDIR /var/lib/sesame
ENV SESAME_ENV=production \
    SESAME_VAR_DIR=/var/lib/sesame/var \
    SESAME_GRPC_ADDR=0.0.0.0:50051 \
    SESAME_METRICS_ADDR=0.0.0.0:9464 \
    SESAME_HEALTH_ADDR=127.0.0.1:50052
EXPOSE 50051 9464
# SERVING only while Redis and the HSM answer (the health watcher), so a broken replica is marked unhealthy.
# The probe holds no client certificate: `sesame health` asks the plaintext health-only listener
# (SESAME_HEALTH_ADDR, loopback: nothing but health is served there, and only inside the container).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s CMD ["sesame", "health"]
ENTRYPOINT ["sesame"]
CMD ["serve"]
