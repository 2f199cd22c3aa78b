# One image with every logagg service binary; compose picks the binary per service.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p collector_service -p source_service -p retention_service \
       -p search_service -p monitoring_service -p analyzer_service \
 && mkdir /out \
 && cp target/release/collector_service target/release/source_service \
       target/release/retention_service target/release/search_service \
       target/release/monitoring_service target/release/analyzer_service /out/

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* && useradd --system --uid 10001 logagg \
 && mkdir -p /app/archive && chown logagg /app/archive
COPY --from=build /out/ /usr/local/bin/
COPY config /app/config
COPY docs/demo-timeline.toml /app/docs/demo-timeline.toml
WORKDIR /app
USER logagg
EXPOSE 9100 5000 5100 8080
