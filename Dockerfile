# sngan on a GPU host:
#   docker build -t sngan .
#   docker run --gpus all --shm-size=8g --user "$(id -u):$(id -g)" \
#     -v "$PWD/data:/data" -v "$PWD/outputs:/outputs" -v "$HOME/.cache/sngan:/cache" \
#     sngan experiment=sngan_resnet32_cifar10
# Overrides append to the entry point; run folders land in /outputs.

# The official PyTorch CUDA runtime image; its torch 2.11 fits pyproject's range (>=2.4,<3), is the
# version docs/speed.md's GPU figures are for, and (>= 2.9) lets torchrun forward SLURM's USR1.
FROM pytorch/pytorch:2.11.0-cuda12.8-cudnn9-runtime

# torch.compile (train.compile, on by default on GPUs) has Triton build a small C launcher at run time
# (and inductor C++ kernels on the CPU):
# the runtime image lacks a C compiler, so add one.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc g++ libc6-dev \
    && rm -rf /var/lib/apt/lists/*

# A --user uid the image does not know has no name: torch 2.11's inductor asks for one (getpass.getuser)
# to name its cache folder and fails at the first compiled step (pytorch#140765). USER and LOGNAME
# answer getpass first, and the inductor cache gets a folder of its own in the container.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SNGAN_DATA_ROOT=/data \
    SNGAN_OUTPUTS=/outputs \
    SNGAN_MULTIRUN=/outputs/multirun \
    SNGAN_STATS_DIR=/cache/stats \
    TORCH_HOME=/cache/torch \
    MPLCONFIGDIR=/tmp/matplotlib \
    HOME=/tmp \
    USER=sngan \
    LOGNAME=sngan \
    TORCHINDUCTOR_CACHE_DIR=/tmp/torchinductor

WORKDIR /opt/sngan
COPY pyproject.toml README.md LICENSE ./
COPY sngan ./sngan
COPY scripts/install.sh ./scripts/install.sh

# Non-editable install through the same script the tests run; then a non-root user. The volume
# folders are world-writable so that `--user "$(id -u):$(id -g)"` (any host uid) can write them.
RUN bash scripts/install.sh \
    && useradd --create-home --uid 1000 --user-group --shell /bin/bash sngan \
    && mkdir -p /data /outputs /cache/torch /cache/stats \
    && chmod 0777 /data /outputs /cache /cache/torch /cache/stats

USER 1000:1000
WORKDIR /outputs
VOLUME ["/data", "/outputs", "/cache"]
EXPOSE 6006

ENTRYPOINT ["python", "-m", "sngan.train"]
CMD ["experiment=quickstart"]
