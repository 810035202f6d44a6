# eie serve in a container. Two images from one build:
#
#   docker build --target cpu -t eie:cpu .   # the CPU engine; no GPU driver in the image
#   docker build --target gpu -t eie:gpu .   # the Vulkan loader; the GPU driver comes from the
#                                            # host (NVIDIA: the container toolkit, --gpus all)
#   docker run --rm -p 8000:8000 -p 8001:8001 eie:cpu
#
# Both serve the committed LeNet-300-100 model as `lenet` (REST on 8000, gRPC on 8001); mount
# other models and pass `--model NAME=PATH` to serve them.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# The `cli` feature builds the `eie` binary (clap, indicatif) and `eie serve` (axum, tonic).
RUN cargo install --locked --path . --features cli --root /out

FROM debian:bookworm-slim AS cpu
COPY --from=build /out/bin/eie /usr/local/bin/eie
COPY assets/lenet/lenet-300-100.eie.safetensors /models/lenet-300-100.eie.safetensors
USER 65534:65534
EXPOSE 8000 8001
ENTRYPOINT ["eie", "serve", "--http", "0.0.0.0:8000", "--grpc", "0.0.0.0:8001"]
CMD ["--model", "lenet=/models/lenet-300-100.eie.safetensors", "--backend", "cpu"]

FROM cpu AS gpu
USER root
RUN apt-get update \
    && apt-get install -y --no-install-recommends libvulkan1 \
    && rm -rf /var/lib/apt/lists/*
USER 65534:65534
# NVIDIA's container toolkit mounts the driver's Vulkan ICD when `graphics` is asked for.
ENV NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics
CMD ["--model", "lenet=/models/lenet-300-100.eie.safetensors", "--backend", "auto", "--devices", "all"]
