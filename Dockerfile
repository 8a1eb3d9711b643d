# One image for the code location, dagster-webserver, dagster-daemon, the Celery workers and `cams serve`
# (deploy/docker-compose.yml, deploy/helm/values.yaml). Pinned like the development install: constraints.txt.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DAGSTER_HOME=/opt/dagster/dagster_home \
    CAMS_PROJECT_DIR=/opt/cams \
    CAMS_CONFIG=/opt/cams/cams.yaml \
    PYTHONPATH=/opt/cams

WORKDIR /opt/cams

# dependencies first (a layer that changes only with the pins), then the project
COPY pyproject.toml constraints.txt ./
COPY cams/__init__.py cams/__init__.py
RUN python -m pip install -c constraints.txt '.[deploy]' && python -m pip uninstall -y cams

COPY cams cams
COPY assets assets
COPY resources resources
COPY pipelines pipelines
COPY workspace.yaml ./
COPY deploy/dagster.yaml /opt/dagster/dagster_home/dagster.yaml
RUN python -m pip install --no-deps -c constraints.txt . \
    && useradd --create-home --uid 10001 cams \
    && mkdir -p /opt/cams/.cams && chown -R cams /opt/cams/.cams /opt/dagster

USER cams
EXPOSE 3000 8080 3030
# the code location's gRPC server (Helm's user deployment, compose's `code`); other services override it
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "3030", "-f", "pipelines/definitions.py", "-d", "/opt/cams"]
