# One image for every liftstream service (results, control, collector, stream worker):
# `docker build -t liftstream .`, then the command picks the service, e.g.
# `python -m services.stream`. deploy/compose.yaml and deploy/helm/liftstream use it.
#
# Two stages: the build stage installs the project and compiles the stream's per-event
# path with mypyc (it needs a C compiler); the runtime stage takes the result without
# the compiler and runs as an unprivileged user. The install commands are the Makefile's
# `setup` commands, word for word (tests/unit/test_deploy_dockerfile.py keeps them so).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
RUN apt-get update \
    && apt-get install --yes --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml setup.py README.md ./
COPY liftstream liftstream
COPY liftstream_cli liftstream_cli
COPY schemas schemas
COPY services services
COPY analytics analytics
RUN python3.11 -m venv .venv
RUN .venv/bin/python -m pip install --quiet --upgrade pip
RUN .venv/bin/python -m pip install --quiet -e '.[server,dev]'
RUN LIFTSTREAM_COMPILE=1 .venv/bin/python -m pip install --quiet --no-deps --no-build-isolation -e .
# The compiled modules must import in place of their sources.
RUN .venv/bin/python -c "import services.stream.processor as m; assert m.__file__.endswith('.so'), m.__file__"

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 liftstream \
    && useradd --system --uid 10001 --gid liftstream --home-dir /data --no-create-home liftstream \
    && mkdir /data && chown liftstream:liftstream /data
WORKDIR /app
COPY --from=build /app /app
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LIFTSTREAM_HOME=/data
USER 10001:10001
VOLUME ["/data"]
EXPOSE 8790 8791 8792
CMD ["python", "-m", "services.results", "--host", "0.0.0.0", "--port", "8790"]
