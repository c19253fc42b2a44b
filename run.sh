#!/usr/bin/env bash
# sagan-tf entry point.
#   ./run.sh                 train the embedded demo (sets up .venv on first use)
#   ./run.sh test [--fast]   run the test suite (--fast: skip tests marked slow)
#   ./run.sh MODE [--flags]  MODE: train | eval | export | sample | attention | bench
#   ./run.sh convert NAME [--flags]   a tfrecords_tools converter / inspector
#   ./run.sh --tpu=NAME [--flags]     train on a Cloud TPU (mode train implied)
set -euo pipefail
cd "$(dirname "$0")"

VENV=.venv
STAMP="$VENV/.requirements.sha256"

pick_python() {
  for p in "${PYTHON:-}" python3.11 python3.12 python3; do
    [ -n "$p" ] || continue
    if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import sys; sys.exit(0 if sys.version_info[:2] in ((3,11),(3,12)) else 1)'; then
      echo "$p"; return 0
    fi
  done
  echo "run.sh: needs Python 3.11 or 3.12 (set PYTHON=/path/to/python)" >&2
  return 1
}

setup_venv() {
  local want have
  want=$(sha256sum requirements.txt | cut -d' ' -f1)
  have=$(cat "$STAMP" 2>/dev/null || true)
  if [ ! -x "$VENV/bin/python" ]; then
    local py; py=$(pick_python)
    echo "run.sh: creating $VENV with $py (first use; installs requirements.txt)" >&2
    "$py" -m venv "$VENV"
    have=""
  fi
  if [ "$want" != "$have" ]; then
    "$VENV/bin/python" -m pip install --disable-pip-version-check -q -r requirements.txt >&2
    echo "$want" > "$STAMP"
  fi
}

setup_venv
PY="$VENV/bin/python"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
# Reuse host memory across steps: without it a 256x128x128x3 float batch is
# returned to the OS and re-allocated every step (input pipeline 2-3x slower).
export TF_CPU_ALLOCATOR_USE_BFC="${TF_CPU_ALLOCATOR_USE_BFC:-true}"

mode="train"
if [ $# -gt 0 ] && [[ "$1" != -* ]]; then mode="$1"; shift; fi

case "$mode" in
  test)
    # Same command as README.md and .ci/run. --fast: everything not marked slow.
    if [ "${1:-}" = "--fast" ]; then
      shift
      exec "$PY" -m pytest tests -q -m "not slow" "$@"
    fi
    exec "$PY" -m pytest tests -q "$@" ;;
  convert)
    if [ $# -eq 0 ] || [[ "$1" == -* ]]; then
      echo "usage: ./run.sh convert {imagenet_to_tfrecords|folder_to_tfrecords|tfds_to_tfrecords|inspect_tfrecords} [--flags]" >&2
      exit 2
    fi
    tool="$1"; shift
    exec "$PY" -m "tfrecords_tools.$tool" "$@" ;;
  *)
    exec "$PY" -m sagan_tf.main "$mode" "$@" ;;
esac
