#!/usr/bin/env bash
# One GPU command: ivlite's full-size checks on a bare CUDA machine without network (~8 minutes).
#
#   bash benchmarks/gpu_check.sh OUT           # GPU: every phase, results in OUT (gpu_check.py)
#   bash benchmarks/gpu_check.sh --smoke OUT   # CPU: the same phases scaled down (CI runs this)
#   bash benchmarks/gpu_check.sh wheels        # with PyPI: the Python 3.12 wheels that the GPU
#                                              # image lacks, into .whl/ (keep it out of git:
#                                              # echo /.whl/ >> .git/info/exclude)
#
# On the GPU machine, packages missing from its python3 (diffusers, open_clip, ftfy) are
# installed from the carried .whl/ folder into /tmp/site, offline; the repository itself is put
# on PYTHONPATH. Exit status 0 when every phase finished (real-weight parts may skip), else 1.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

if [ "${1:-}" = wheels ]; then
    "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
        -d .whl diffusers==0.42.1 open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth==0.9.4 \
        importlib_metadata
    ls -l .whl
    exit 0
fi

if ! "$PYTHON" -c "import diffusers, peft, open_clip, transformers, accelerate" 2>/dev/null; then
    if compgen -G ".whl/*.whl" > /dev/null; then
        echo "installing the carried wheels (.whl/) into /tmp/site"
        "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/site .whl/*.whl
        export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
    else
        echo "missing Python packages and no .whl/ folder: run '$0 wheels' where PyPI is" \
             "reachable and carry .whl/" >&2
        exit 2
    fi
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}
exec "$PYTHON" -m benchmarks.gpu_check "$@"
