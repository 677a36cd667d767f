#!/usr/bin/env bash
# Creates .venv (Python 3.10) with the pinned dependency set, unless it is already up to date.
# Called by `make demo` and `make test`; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
stamp=.venv/.installed
if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ] && [ "$stamp" -nt constraints.txt ] && [ -x .venv/bin/neuroposter ]; then
  exit 0
fi
find_python() {
  for c in "${PYTHON:-}" python3.10 "$(command -v pyenv >/dev/null 2>&1 && pyenv root 2>/dev/null)/versions/3.10.13/bin/python" \
           "$HOME/.pyenv/versions/3.10.13/bin/python" /usr/bin/python3.10 python3; do
    [ -n "$c" ] || continue
    if command -v "$c" >/dev/null 2>&1 || [ -x "$c" ]; then
      if "$c" -c 'import sys; raise SystemExit(sys.version_info[:2] != (3, 10))' 2>/dev/null; then
        echo "$c"; return 0
      fi
    fi
  done
  return 1
}
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys; raise SystemExit(sys.version_info[:2] != (3, 10))' 2>/dev/null; then
  py=$(find_python) || { echo "error: Python 3.10 is required (lava-nc/lava-dl support nothing else); install it, e.g. 'pyenv install 3.10.13', or set PYTHON=/path/to/python3.10" >&2; exit 1; }
  echo "creating .venv with $py" >&2
  rm -rf .venv
  "$py" -m venv .venv
fi
echo "installing pinned dependencies into .venv (first time: a few minutes; torch is large)" >&2
.venv/bin/python -m pip install -q --upgrade "pip==24.3.1"
PIP_CONSTRAINT="$PWD/constraints.txt" .venv/bin/python -m pip install -q -e ".[dev]"
# Vendor chip simulators (versions in constraints.txt), without their declared dependencies: sinabs' metadata
# pins nir<=1.0.4 and samna (pip would downgrade nir; samna cannot install here), xylosim's names pybind11 (build
# only). At run time they need only what the main install has (torch, numpy, nir, nirtorch; sinabs imports pbr).
PIP_CONSTRAINT="$PWD/constraints.txt" .venv/bin/python -m pip install -q --no-deps xylosim sinabs pbr
# numba compiles the project's kernels on their first call and caches the machine code: do it now, not in the first
# command (neuroposter/_warm.py)
.venv/bin/python -m neuroposter._warm >&2
touch "$stamp"
