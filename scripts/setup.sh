#!/usr/bin/env bash
# One command to set up a fresh clone on a CPU machine: a virtual environment in .venv with the pinned stack.
# Idempotent: a second run only checks. Usage: bash scripts/setup.sh  (VENV=path to change the location)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PY="${PYTHON:-python3}"
C="scripts/constraints.txt"
STAMP="$VENV/.hm-setup-$(cat pyproject.toml "$C" scripts/setup.sh | sha1sum | cut -c1-12)"
if [ -f "$STAMP" ]; then exit 0; fi

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -c "$C")
# pip warns about every index folder that lacks a package; keep its output to real problems.
pip_install() { "${PIP[@]}" "$@" 2>&1 | { grep -v "is ignored: it is neither" || true; }; return "${PIPESTATUS[0]}"; }
echo "[setup] torch (CPU) + torchvision"
pip_install torch==2.13.0 torchvision==0.28.0
echo "[setup] human-motion and its dependencies"
pip_install -e ".[mediapipe,insightface,model,dev,demo]"
echo "[setup] mediapipe 0.10.21 (--no-deps: its pins would downgrade numpy and overwrite cv2)"
pip_install --no-deps mediapipe==0.10.21

# torchvision 0.28.0 is a CUDA build; with a CPU torch its import fails in two register_fake decorators for
# ops that have no CPU kernel here (pytorch/vision#9085). Guard them; RAFT and transforms need no compiled op.
"$VENV/bin/python" scripts/patch_torchvision.py
"$VENV/bin/python" - <<'PY'
import torchvision, cv2, av, ray, webdataset, mediapipe, dlib, diffusers, transformers, insightface, gradio  # noqa: F401
from mediapipe.python.solutions import face_detection, face_mesh  # noqa: F401
print(f"[setup] ok: torch {__import__('torch').__version__}, torchvision {torchvision.__version__}, "
      f"opencv {cv2.__version__}, ray {ray.__version__}, mediapipe {mediapipe.__version__}")
PY
# Headless browser for the `hm demo` page test (playwright drives Debian's chromium; never `playwright install`).
# Only as root with apt; otherwise (or if apt fails) that one test skips.
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "[setup] chromium (headless browser for the demo test)"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; } \
    >/dev/null 2>&1 || echo "[setup] chromium could not be installed; the demo's browser test will skip"
fi
rm -f "$VENV"/.hm-setup-*
touch "$STAMP"
