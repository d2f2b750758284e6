# sfproxy image: `sfproxy run` by default; docker-compose.yml also runs the
# Salesforce stand-in from it.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN cargo build --release --locked \
 && install -m 0755 target/release/sfproxy /usr/local/bin/sfproxy

FROM debian:bookworm-slim
# sfproxy trusts its built-in Mozilla roots plus proxy.ca_file, not the system
# store; ca-certificates is here for anything else run in the image. curl is
# for health checks against the admin port (docker-compose.yml: /readyz).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*
# A non-root user. /demo belongs to it so that a named volume mounted there
# (docker-compose.yml) is writable by the stand-in.
RUN useradd --system --user-group --uid 10001 --no-create-home --shell /usr/sbin/nologin sfproxy \
 && mkdir /demo && chown sfproxy:sfproxy /demo
COPY --from=build /usr/local/bin/sfproxy /usr/local/bin/sfproxy
USER sfproxy:sfproxy
ENV SFPROXY_CONFIG=/etc/sfproxy/sfproxy.toml
# 3128: the proxy; 9464: the admin port, when the config sets admin_listen.
EXPOSE 3128 9464
ENTRYPOINT ["sfproxy"]
CMD ["run"]
