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
  want=$(cat requirements.txt requirements-base.txt | sha256sum | cut -d' ' -f1)
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

# --- Cloud TPU: .venv-tpu, with TensorFlow's TPU build and never a second TensorFlow.
has_tpu_device() { compgen -G '/dev/accel*' >/dev/null || compgen -G '/dev/vfio/[0-9]*' >/dev/null; }

system_tf_python() {  # a system Python whose TensorFlow is preinstalled (tpu-vm-tf-* runtime)
  for p in "${PYTHON:-}" python3 python3.12 python3.11 python3.10; do
    [ -n "$p" ] || continue
    if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import importlib.util as u, sys; sys.exit(0 if u.find_spec("tensorflow") else 1)' 2>/dev/null; then
      echo "$p"; return 0
    fi
  done
  return 1
}

setup_tpu_venv() {
  VENV=.venv-tpu
  STAMP="$VENV/.requirements.sha256"
  local want have py
  want=$(cat requirements-base.txt requirements-tpu.txt requirements-tpu-nodeps.txt | sha256sum | cut -d' ' -f1)
  have=$(cat "$STAMP" 2>/dev/null || true)
  if [ ! -x "$VENV/bin/python" ]; then
    if py=$(system_tf_python); then
      echo "run.sh: creating $VENV over the preinstalled TensorFlow of $py (system site-packages)" >&2
      "$py" -m venv --system-site-packages "$VENV"
    else
      py=$(pick_python)
      echo "run.sh: creating $VENV with $py (installs requirements-tpu.txt)" >&2
      "$py" -m venv "$VENV"
    fi
    have=""
  fi
  [ "$want" = "$have" ] && return 0
  if "$VENV/bin/python" -c 'import importlib.util as u, sys; sys.exit(0 if u.find_spec("tensorflow") else 1)'; then
    # A TensorFlow is there (the system's, or one installed before): add only the
    # missing packages; tf-keras pinned to its version, all TF-bound ones without deps.
    "$VENV/bin/python" -m sagan_tf.tools.install_missing >&2
  else
    "$VENV/bin/python" -m pip install --disable-pip-version-check -q -r requirements-tpu.txt >&2
    "$VENV/bin/python" -m pip install --disable-pip-version-check -q --no-deps -r requirements-tpu-nodeps.txt >&2
  fi
  echo "$want" > "$STAMP"
}

wants_tpu=0 prev=""
for a in "$@"; do
  case "$a" in --tpu=?*) wants_tpu=1 ;; esac
  if [ "$prev" = "--tpu" ] && [ -n "$a" ]; then wants_tpu=1; fi
  prev="$a"
done
# The TPU environment on a machine with a TPU (or when asked for: CI runs the
# TPU build on the CPU with SAGAN_TPU_ENV=1). Elsewhere --tpu runs in .venv,
# whose TensorFlow says within seconds that it has no TPU support.
if [ "${SAGAN_TPU_ENV:-}" = 1 ] || { [ "$wants_tpu" = 1 ] && has_tpu_device; }; then
  setup_tpu_venv
else
  setup_venv
fi
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
    # Two pytest workers (pytest-xdist): much of a test is single-threaded
    # Python (tracing, graph building, process start-up), so two of them keep
    # both cores busy (BUILD_NOTES.md, "The test suite on two cores").
    # SAGAN_TEST_WORKERS=0 runs in one process.
    workers=(-n "${SAGAN_TEST_WORKERS:-2}" --dist worksteal)
    if [ "${1:-}" = "--fast" ]; then
      shift
      exec "$PY" -m pytest tests -q "${workers[@]}" -m "not slow" "$@"
    fi
    exec "$PY" -m pytest tests -q "${workers[@]}" "$@" ;;
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
