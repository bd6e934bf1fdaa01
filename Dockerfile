# Container for the cloud profiles (kubernetes, googlebatch, awsbatch): every job runs
# `python -m snakemake ...` inside this image, so it holds dnalm, the workflow files and the
# pinned Snakemake with its storage plugins. torch comes from PyPI (its Linux wheel bundles CUDA;
# GPU nodes need only the NVIDIA driver). Pins equal pyproject.toml's (tests/test_profiles.py).
#   docker build -t <registry>/dnalm:0.1.0 .
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1

# pysam/pyBigWig wheels are self-contained; procps gives Snakemake `ps` for job bookkeeping.
RUN apt-get update \
 && apt-get install -y --no-install-recommends procps \
 && rm -rf /var/lib/apt/lists/*

RUN pip install torch==2.13.0

WORKDIR /opt/dnalm
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install . \
    snakemake-storage-plugin-s3==0.3.6 \
    snakemake-storage-plugin-gcs==1.1.4

COPY Snakefile ./
COPY rules ./rules
COPY scripts ./scripts
COPY config ./config
COPY report ./report
