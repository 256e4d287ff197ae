# The worker (and dashboard) image: the project and its pinned torch on a CUDA-capable base.
#   docker build -t sweeper .
#   docker run --gpus all -e SWEEPER_STORAGE=postgresql+psycopg2://... sweeper worker --study NAME
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    SWEEPER_HOME=/var/lib/sweeper \
    SWEEPER_CACHE=/var/cache/sweeper

WORKDIR /opt/sweeper
COPY pyproject.toml README.md ./
COPY sweeper ./sweeper
COPY studies ./studies
# torch==2.14.1 from PyPI is a CUDA build that brings its own CUDA runtime and Triton.
RUN pip install . && useradd --create-home --uid 1000 sweeper \
    && mkdir -p /var/lib/sweeper /var/cache/sweeper /data \
    && chown -R sweeper /var/lib/sweeper /var/cache/sweeper
USER sweeper
ENTRYPOINT ["sweeper"]
CMD ["--help"]
