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
# The install steps live in scripts/docker-install; CI replays them in a clean virtual
# environment (scripts/docker-install-check) because it cannot build images.

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim-trixie AS build
ENV VIRTUAL_ENV=/opt/venv \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
# Dependencies first, exactly as locked (hashed pins; `make lock` refreshes them): this layer
# stays cached until requirements.lock changes.
COPY scripts/docker-install scripts/docker-install
COPY requirements.lock ./
RUN --mount=type=cache,target=/root/.cache/pip sh scripts/docker-install deps
# Then the source; pyproject.toml's ranges are checked against the lock (pip check).
COPY pyproject.toml README.md ./
COPY relay/ relay/
RUN --mount=type=cache,target=/root/.cache/pip sh scripts/docker-install app


FROM python:${PYTHON_VERSION}-slim-trixie AS runtime
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
