# evotune on a CUDA host: docker run --gpus all -v $PWD:/data evotune search --shape mission
FROM pytorch/pytorch:2.11.0-cuda13.0-cudnn9-runtime

WORKDIR /opt/evotune
COPY pyproject.toml README.md ./
COPY evotune ./evotune
COPY kernels ./kernels
COPY search_spaces ./search_spaces
COPY migrations ./migrations
# torch comes with the base image; the project's bounds accept it.
RUN python -m pip install --no-cache-dir . && python -c "import evotune.cli"

ENV EVOTUNE_DB=sqlite:////data/evotune.db
VOLUME ["/data"]
EXPOSE 8000
ENTRYPOINT ["evotune"]
CMD ["--help"]
