#!/usr/bin/env bash
# Prints the path of the reference Python interpreter (OpenAI's `clip` on PyTorch) for the scripts
# in scripts/ and bench/:
#   - $ZEROCLIP_REF_PYTHON when set (an interpreter you manage; nothing is installed into it);
#   - otherwise .venv-ref/bin/python under the repository root (git-ignored), created on first use
#     from `${PYTHON:-python3}` with openai-clip, torch, torchvision and their helpers, plus the
#     extra packages named as arguments (installed once per distinct list).
#
#   PY=$(scripts/ref_python.sh numpy scikit-image) && "$PY" scripts/make_image_fixtures.py
#
# Installation messages go to stderr, so the script's output is only the path.
set -euo pipefail
if [[ -n "${ZEROCLIP_REF_PYTHON:-}" ]]; then
    printf '%s\n' "$ZEROCLIP_REF_PYTHON"
    exit 0
fi
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv-ref"
base=(openai-clip torch torchvision ftfy regex pillow tqdm packaging "setuptools<70")
if [[ ! -x "$venv/bin/python" ]]; then
    "${PYTHON:-python3}" -m venv "$venv" >&2
fi
# One stamp per package list: the list, sorted, names it.
want=$(printf '%s\n' "${base[@]}" "$@" | sort -u)
stamp="$venv/.installed-$(printf '%s' "$want" | sha256sum | cut -c1-16)"
if [[ ! -e "$stamp" ]]; then
    # openai-clip's setup.py needs pkg_resources, so the build runs in this environment.
    "$venv/bin/python" -m pip install --quiet "setuptools<70" wheel >&2
    "$venv/bin/python" -m pip install --quiet --no-build-isolation "${base[@]}" "$@" >&2
    printf '%s\n' "$want" >"$stamp"
fi
printf '%s\n' "$venv/bin/python"
