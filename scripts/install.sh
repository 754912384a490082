#!/usr/bin/env bash
# Install sngan non-editable from this checkout: the Docker image's install step, also run by the
# tests (tests/test_docker.py) so the image's install path is exercised without a Docker engine.
# Extra arguments go to pip, e.g. `bash scripts/install.sh --no-deps` in a venv that already has torch.
set -euo pipefail
project="$(cd "$(dirname "$0")/.." && pwd)"
python -m pip install --no-cache-dir "$@" "$project"
# Check from / so that a checkout in the working directory cannot shadow the installed package.
(cd / && python -c "import sngan, sngan.train; print('sngan', sngan.__version__, 'installed at', sngan.__file__)")
