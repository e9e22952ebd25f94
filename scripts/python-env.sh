#!/usr/bin/env bash
# Prints the path of a Python with the examples' requirements (examples/*/requirements.txt), made
# once in a virtual environment from PyPI: the customer's view, off-the-shelf libraries only.
#
# Environment: PY_ENV, where the environment lives (default /var/tmp/auditpipe/pyenv).
set -euo pipefail
cd "$(dirname "$0")/.."
env=${PY_ENV:-/var/tmp/auditpipe/pyenv}
reqs=$(cat examples/*/requirements.txt | sort -u)
if [ ! -x "$env/bin/python" ] || [ "$(cat "$env/requirements.txt" 2>/dev/null)" != "$reqs" ]; then
  rm -rf "$env"
  python3 -m venv "$env" >&2
  "$env/bin/pip" install -q --disable-pip-version-check $reqs >&2
  printf '%s' "$reqs" > "$env/requirements.txt"
fi
echo "$env/bin/python"
