#!/bin/sh
# Runs scripts/make_eval_fixtures.py with the reference interpreter: $ZEROCLIP_REF_PYTHON, else a
# venv made here (target/ref-venv) with the reference packages.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
py=${ZEROCLIP_REF_PYTHON:-}
if [ -z "$py" ]; then
    venv="$here/../target/ref-venv"
    if [ ! -x "$venv/bin/python" ]; then
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet torch openai-clip scikit-learn safetensors pillow numpy
    fi
    py="$venv/bin/python"
fi
exec "$py" "$here/make_eval_fixtures.py" "$@"
