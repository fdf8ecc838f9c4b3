# evotune on a CUDA host (docs/getting-started.md, "In a container"):
#   docker build -t evotune .
#   docker run --gpus all -v "$PWD/evotune-data:/data" evotune search --shape mission
#   docker run --gpus all -p 8000:8000 -v "$PWD/evotune-data:/data" evotune
# The second serves the REST API and the dashboard on port 8000 of the host.
FROM pytorch/pytorch:2.11.0-cuda13.0-cudnn9-runtime

# Triton compiles a small C launcher for every kernel when it first runs it: a runtime image
# ships no C compiler, so without one every trial would fail to compile.
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/evotune
COPY pyproject.toml README.md ./
COPY evotune ./evotune
COPY kernels ./kernels
COPY search_spaces ./search_spaces
COPY migrations ./migrations
# torch comes with the base image; the project's bounds accept it.
RUN python -m pip install --no-cache-dir . && python -c "import evotune.cli" && gcc --version

ENV EVOTUNE_DB=sqlite:////data/evotune.db
VOLUME ["/data"]
EXPOSE 8000
ENTRYPOINT ["evotune"]
# Inside a container the loopback address is the container's own: bind every interface, so
# that `-p 8000:8000` reaches the service.
CMD ["serve", "--host", "0.0.0.0"]
