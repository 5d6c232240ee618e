# syntax=docker/dockerfile:1
# Build stage: a virtualenv with CPU-only torch (never a CUDA build), then Unfold.
FROM python:3.11-slim AS build
# Set TORCH_INDEX_URL to PyTorch's CPU wheel index (docker compose passes it from .env): torch alone
# comes from there, without its dependencies; they and everything else come from pip's configured index.
ARG TORCH_INDEX_URL
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
RUN test -n "$TORCH_INDEX_URL" || { echo "set TORCH_INDEX_URL to PyTorch's CPU wheel index" >&2; exit 1; }; \
    pip install --no-deps --index-url "$TORCH_INDEX_URL" torch==2.13.0
WORKDIR /src
COPY pyproject.toml README.md ./
COPY app ./app
COPY workers ./workers
COPY migrations ./migrations
RUN pip install .

# Runtime stage: the virtualenv only, run as an unprivileged user.
FROM python:3.11-slim
# Every folder docker-compose mounts a volume on is made here, owned by unfold: a named volume
# mounted on a path the image lacks would be created root-owned and unwritable for this user.
RUN useradd --create-home --uid 10001 unfold \
    && mkdir -p /srv/unfold/var /srv/unfold/var/artifacts \
    && chown -R unfold:unfold /srv/unfold
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    UNFOLD_HOST=0.0.0.0 \
    UNFOLD_PORT=8000 \
    UNFOLD_VAR_DIR=/srv/unfold/var \
    NUMBA_CACHE_DIR=/srv/unfold/var/numba-cache
WORKDIR /srv/unfold
USER unfold
EXPOSE 8000
# Shell form, so the port is the one the container runs with (UNFOLD_PORT), read when the check runs.
HEALTHCHECK --interval=10s --timeout=3s --retries=5 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:${UNFOLD_PORT:-8000}/healthz')"
CMD ["unfold", "api"]
