# Sésame image: the wheel (with the generated stubs) built by `make wheel`, SoftHSM2 and redis-server for
# the embedded development defaults, running as a non-root user. The image is production by default
# (SESAME_ENV=production): it refuses to start until it is given SESAME_REDIS_URL, the SESAME_PKCS11_* /
# SESAME_HSM_* settings of its HSM, SESAME_SMS_PROVIDERS (kannel, smpp, in failover order) with their settings, and (mounted read-only) the
# mTLS files and the caller policy named by SESAME_TLS_CERT_FILE, SESAME_TLS_KEY_FILE,
# SESAME_TLS_CLIENT_CA_FILE and SESAME_AUTHZ_POLICY_FILE (docs/operations.md, "Transport security and
# callers"). Development (embedded Redis, dev token, codes in a file) only when asked for:
# `docker run -e SESAME_ENV=development ...`. `make image` builds and starts it where a Docker engine runs;
# where none does, it builds the same runtime root filesystem with mmdebstrap and starts it there
# (docs/operations.md, "The image"). The tests check this file and .dockerignore, and run `sesame serve`
# with this image's ENV.

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

# The runtime stage: Debian 12 and Debian's Python, installed by tools/image-install.sh, the very script
# `make image` runs in a root filesystem made from Debian's packages with mmdebstrap where no Docker engine
# runs (tools/image-check.sh): the two cannot drift. It installs python3, softhsm2, redis-server and
# fonts-dejavu-core and fonts-droid-fallback (the evidence PDF's fonts, decision 0042) without recommends or services, a venv under /opt/sesame with the runtime lock only (no grpcio-tools, pytest,
# mypy, ruff..., every file checked against its hash) and the wheel alone (which resolves nothing), then
# removes pip: no compiler, no dev tool. Read-only root filesystem friendly: the user owns only its data
# directory (a volume); /tmp (the workers' metrics files) wants a tmpfs: `docker run --read-only --tmpfs /tmp`.
FROM debian:bookworm-slim
COPY tools/apt-install.sh tools/image-install.sh requirements.lock /tmp/install/
COPY --from=build /src/dist/*.whl /tmp/install/
RUN /tmp/install/image-install.sh /tmp/install
USER sesame
WORKDIR /var/lib/sesame
VOLUME ["/var/lib/sesame/var"]
# The wildcard is the container's own network, reached from outside only through a port published on purpose
# (`-p`): SESAME_OPEN_BEYOND_LOOPBACK lets `docker run -e SESAME_ENV=development` listen there without a
# caller policy (production requires mTLS and a policy whatever it says; decision 0082).
ENV SESAME_ENV=production \
    SESAME_OPEN_BEYOND_LOOPBACK=1 \
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
