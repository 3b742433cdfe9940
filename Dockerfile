# syntax=docker/dockerfile:1
# artflow in a container (docs/deploy.md).  Debian 12 in both stages: the
# build stage compiles with the same packages as ./INSTALL and installs into
# /opt/artflow (cmake --install: bin/artflow, share/artflow/...); the run
# stage holds only the runtime libraries, the ICD loader and PoCL, a CPU
# OpenCL device that works everywhere.  libcurl and Exempi are for the iiif
# source (HTTPS, hence ca-certificates) and the xmp sink, libmicrohttpd for
# artflow serve.
#
#   docker build -t artflow .
#   docker run --rm -v "$PWD/data:/data" artflow run /data/pipeline.yaml         # CPU (PoCL)
#   docker run --rm -p 127.0.0.1:8080:8080 -v "$PWD/data:/data" artflow \
#     serve --model /data/model.gguf --host 0.0.0.0                               # docs/serve.md
#
# GPUs: no vendor driver is baked in.  The node's driver libraries come from
# the vendor's container runtime (NVIDIA: --gpus all with
# NVIDIA_DRIVER_CAPABILITIES=compute), and its OpenCL ICD file is mounted at
# run time next to PoCL's:
#   docker run --rm --gpus all -e NVIDIA_DRIVER_CAPABILITIES=compute,utility \
#     -v /etc/OpenCL/vendors/nvidia.icd:/etc/OpenCL/vendors/nvidia.icd:ro \
#     -v "$PWD/data:/data" artflow run /data/pipeline.yaml   # a GPU is preferred over PoCL
FROM debian:12-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential cmake pkg-config ocl-icd-opencl-dev opencl-c-headers libclblast-dev \
      libvips-dev libyaml-dev zlib1g-dev libcjson-dev libssl-dev libcurl4-openssl-dev libexempi-dev \
      libmicrohttpd-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=Release -DAF_BUILD_TESTS=OFF \
 && cmake --build /build -j"$(nproc)" --target artflow \
 && cmake --install /build --prefix /opt/artflow

FROM debian:12-slim AS run
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      ocl-icd-libopencl1 pocl-opencl-icd libclblast1 libvips42 libglib2.0-0 libyaml-0-2 zlib1g libcjson1 libssl3 \
      libcurl4 libexempi8 libmicrohttpd12 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/artflow /opt/artflow
# PoCL compiles kernels on first use and needs a writable cache; mount a
# volume here to keep it between runs
ENV PATH=/opt/artflow/bin:$PATH \
    POCL_CACHE_DIR=/var/cache/artflow/pocl \
    XDG_CACHE_HOME=/var/cache/artflow
RUN useradd --system --uid 10001 --home-dir /data artflow \
 && mkdir -p /var/cache/artflow/pocl /data \
 && chown -R artflow /var/cache/artflow /data
USER artflow
WORKDIR /data
# SIGTERM reaches artflow directly (it is PID 1's only process): it stops
# taking images, gives those in flight --grace seconds and exits 75
STOPSIGNAL SIGTERM
ENTRYPOINT ["artflow"]
CMD ["--help"]
