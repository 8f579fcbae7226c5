# syntax=docker/dockerfile:1
# Tollgate: a multi-stage build into a small non-root runtime image.
#   docker build -t tollgate .
#   docker run --rm -p 5060:5060/udp -p 5060:5060/tcp -p 8080:8080 \
#     -e TOLLGATE_REDIS_URL=redis://redis:6379/0 -e TOLLGATE_ADMIN_TOKEN=... \
#     -v $PWD/site:/etc/tollgate tollgate
# /etc/tollgate holds tollgate.toml and its rules (routes/); the image ships
# deploy/kubernetes/tollgate.toml and its routes as a starting point. SIGTERM drains (503 with
# Retry-After to new calls while pending decisions are answered), so `docker stop` with its
# default 10 s grace period loses no call; raise it (--stop-timeout) above sip.drain_timeout_ms.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p tollgate-server --bin tollgate \
 && strip target/release/tollgate

FROM debian:bookworm-slim
# ca-certificates: an HTTPS CRM and webhooks verify their servers.
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/tollgate --shell /usr/sbin/nologin tollgate \
 && mkdir -p /etc/tollgate /var/lib/tollgate \
 && chown tollgate /var/lib/tollgate
COPY --from=build /src/target/release/tollgate /usr/local/bin/tollgate
COPY deploy/kubernetes/tollgate.toml /etc/tollgate/tollgate.toml
COPY deploy/kubernetes/routes/ /etc/tollgate/routes/
USER 10001
WORKDIR /var/lib/tollgate
VOLUME ["/etc/tollgate"]
EXPOSE 5060/udp 5060/tcp 8080/tcp
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/tollgate"]
CMD ["serve", "--config", "/etc/tollgate/tollgate.toml"]
