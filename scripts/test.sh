#!/usr/bin/env bash
# The README's one test command: every Rust test, then the Python package's tests.
#
#   bash scripts/test.sh
#
# Python: a venv of its own ($ZEROCLIP_TEST_VENV, default target/py-venv) gets what
# crates/zeroclip-py/requirements-test.txt lists, the extension is built into it with
# `maturin develop` (sharing cargo's target directory), and pytest runs crates/zeroclip-py/tests
# against the committed fixtures — neither torch nor the reference package is needed.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --workspace

venv=${ZEROCLIP_TEST_VENV:-target/py-venv}
case "$venv" in /*) ;; *) venv="$PWD/$venv" ;; esac
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r crates/zeroclip-py/requirements-test.txt
(cd crates/zeroclip-py && VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" maturin develop -q)
# The CLI the Python tests compare with: the build `cargo test` just made.
ZEROCLIP_CLI="$PWD/target/debug/zeroclip" "$venv/bin/python" -m pytest crates/zeroclip-py/tests -q -p no:cacheprovider
