# The engine builder image: CUDA + TensorRT (builder and ONNX parser) + the export stack.
# Build from the repository root: docker build -f build/Dockerfile.builder -t planetgen/builder .
# The operator's Job runs: python -m planet_build --model ... --cache-dir /cache --expect-key KEY
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-devel-ubuntu24.04
FROM python:3.11-slim AS wheel
WORKDIR /src
RUN pip install --no-cache-dir "hatchling>=1.25" build
COPY pyproject.toml README.md ./
COPY operator ./operator
COPY predictors ./predictors
COPY build/planet_build ./build/planet_build
COPY contracts ./contracts
RUN python -m build --wheel --outdir /wheels .

FROM ${CUDA_IMAGE}
# Must satisfy spec.engine.tensorrtVersion (a prefix match: 10.13 accepts 10.13.x): it is in the engine key.
ARG TENSORRT_VERSION=10.13.*
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH HF_HUB_OFFLINE=1
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* && python3 -m venv /opt/venv
COPY --from=wheel /wheels /wheels
RUN pip install "$(ls /wheels/*.whl)[predictor,tensorrt]" "tensorrt==${TENSORRT_VERSION}" && rm -rf /wheels \
    && useradd --system --uid 10001 --create-home planet \
    && mkdir /cache && chown planet /cache
USER 10001
WORKDIR /home/planet
VOLUME ["/cache"]
ENTRYPOINT ["python", "-m", "planet_build"]
