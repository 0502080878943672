# syntax=docker/dockerfile:1
#
# whatsapp-relay image: a build stage that installs into a virtual environment, and a slim
# runtime stage of the same Python that only receives that environment.
#
#   docker build -t whatsapp-relay .
#   docker run --rm -p 8080:8080 -p 8081:8081 \
#     -e RELAY_AUTH__BEARER_TOKENS='["change-me"]' \
#     -e RELAY_KAFKA__BOOTSTRAP_SERVERS=kafka:9092 whatsapp-relay
#
# Without Docker: `make image` (scripts/build-image) builds this file with podman, and where the
# official base image cannot be pulled, on a stand-in with the same Python built from Debian's
# packages (scripts/build-base-image). The install steps live in scripts/docker-install.
#
# Behind a proxy that re-signs TLS, hand pip the proxy's CA bundle as a build secret: it is
# mounted for the dependency step only (the one that downloads) and never stored in a layer.
#   docker build --secret id=ca-bundle,src=/etc/ssl/certs/ca-certificates.crt -t whatsapp-relay .

ARG PYTHON_VERSION=3.11
# Both stages use it: the virtual environment's interpreter path must exist in the runtime.
ARG BASE_IMAGE=python:${PYTHON_VERSION}-slim-trixie

FROM ${BASE_IMAGE} AS build
ENV VIRTUAL_ENV=/opt/venv \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
# Dependencies and the build backend first, exactly as locked (hashed pins; `make lock` refreshes
# them): this layer stays cached until requirements.lock changes.
COPY scripts/docker-install scripts/docker-install
COPY requirements.lock ./
RUN --mount=type=cache,target=/root/.cache/pip --mount=type=secret,id=ca-bundle \
    sh scripts/docker-install deps
# Then the source; pyproject.toml's ranges are checked against the lock (pip check).
COPY pyproject.toml README.md ./
COPY relay/ relay/
# Offline (pip --no-index): the build backend came, locked, with the dependencies.
RUN sh scripts/docker-install app


FROM ${BASE_IMAGE} AS runtime
ARG VERSION=dev
LABEL org.opencontainers.image.title="whatsapp-relay" \
      org.opencontainers.image.description="Authenticated WhatsApp Business webhooks in, raw payloads out on Kafka" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
# A numeric user, so Kubernetes can verify runAsNonRoot without a runAsUser.
RUN groupadd --system --gid 10001 relay \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin relay
COPY --from=build /opt/venv /opt/venv
# Bytecode was compiled at install time; the root filesystem may be read-only.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /app
USER 10001:10001
# 8080: webhooks (server.port); 8081: /metrics, /healthz, /readyz (admin.port).
EXPOSE 8080 8081
# Exec form: the relay is PID 1 and receives SIGTERM itself for its graceful shutdown.
ENTRYPOINT ["whatsapp-relay"]
CMD ["serve"]
