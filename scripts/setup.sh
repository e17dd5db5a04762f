#!/usr/bin/env bash
# One command to set up a fresh clone: a virtual environment in .venv with the pinned stack.
# A machine where nvidia-smi lists a GPU gets torch's CUDA build and onnxruntime-gpu; any other gets the CPU stack.
# Idempotent: a second run only checks.
# Usage: bash scripts/setup.sh [--gpu | --cpu] [--plan]    (VENV=path to change the location)
#   --gpu / --cpu   force the kind of machine instead of asking nvidia-smi
#   --plan          print what would be installed and exit, installing nothing
#   TORCH_INDEX_URL with --gpu: a PyTorch wheel index for another CUDA version (pytorch.org's install selector)
set -euo pipefail
cd "$(dirname "$0")/.."
KIND=auto
PLAN=0
for arg in "$@"; do
  case "$arg" in
    --gpu) KIND=gpu ;;
    --cpu) KIND=cpu ;;
    --plan) PLAN=1 ;;
    -h | --help) sed -n 2,8p "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option '$arg' (use --gpu, --cpu, --plan)" >&2; exit 2 ;;
  esac
done
# The GPU's name, if nvidia-smi is here and lists one ("GPU 0: NVIDIA H200 (UUID: ...)"); empty otherwise.
gpu_name() {
  command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | sed -n 's/^GPU 0: \(.*\) (UUID.*/\1/p'
}
GPU="$(gpu_name || true)"
if [ "$KIND" = auto ]; then KIND=$([ -n "$GPU" ] && echo gpu || echo cpu); fi

VENV="${VENV:-.venv}"
PY="${PYTHON:-python3}"
C="scripts/constraints.txt"
TORCH=(torch==2.13.0 torchvision==0.28.0)
if [ "$KIND" = gpu ]; then
  EXTRAS="mediapipe,insightface-gpu,ocr-gpu,ocr-easyocr,model,dev,demo"
  TORCH_FROM=${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
else
  EXTRAS="mediapipe,insightface,ocr,ocr-easyocr,model,dev,demo"
  TORCH_FROM=""
fi
if [ "$PLAN" = 1 ]; then
  echo "[setup] plan: $KIND machine (nvidia-smi: ${GPU:-no GPU listed}), venv $VENV"
  if [ "$KIND" = gpu ]; then
    echo "[setup] plan: ${TORCH[*]} CUDA build from ${TORCH_INDEX_URL:-the package index}; onnxruntime-gpu"
  else
    echo "[setup] plan: ${TORCH[*]} (CPU build where pip's wheel folder ships it); onnxruntime; torchvision patched"
  fi
  echo "[setup] plan: -e .[$EXTRAS]; --no-deps: mediapipe==0.10.21 insightface==2.1"
  exit 0
fi
STAMP="$VENV/.hm-setup-$KIND-$(cat pyproject.toml "$C" scripts/setup.sh | sha1sum | cut -c1-12)"
if [ -f "$STAMP" ]; then exit 0; fi

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -c "$C")
# pip warns about every index folder that lacks a package; keep its output to real problems.
pip_install() { "${PIP[@]}" "$@" 2>&1 | { grep -v "is ignored: it is neither" || true; }; return "${PIPESTATUS[0]}"; }
if [ "$KIND" = gpu ]; then
  echo "[setup] torch (CUDA) + torchvision"
  # shellcheck disable=SC2086 # TORCH_FROM is empty or one option and its value
  pip_install ${TORCH_FROM} "${TORCH[@]}"
  # onnxruntime and onnxruntime-gpu both install the module `onnxruntime`: never keep both.
  "$VENV/bin/python" -m pip uninstall --quiet -y onnxruntime 2>/dev/null || true
else
  echo "[setup] torch (CPU) + torchvision"
  pip_install "${TORCH[@]}"
fi
echo "[setup] human-motion and its dependencies"
pip_install -e ".[$EXTRAS]"
# Both pin or pull packages that would replace ours: mediapipe downgrades numpy and overwrites cv2; insightface
# 2.1 (a pure-Python wheel) asks for the non-headless opencv-python. Their import-time needs are in the extras.
echo "[setup] mediapipe 0.10.21 and insightface 2.1 (--no-deps)"
pip_install --no-deps mediapipe==0.10.21 insightface==2.1

if [ "$KIND" = cpu ]; then
  # torchvision 0.28.0 is a CUDA build; with a CPU torch its import fails in two register_fake decorators for
  # ops that have no CPU kernel here (pytorch/vision#9085). Guard them; RAFT and transforms need no compiled op.
  "$VENV/bin/python" scripts/patch_torchvision.py
fi
HM_SETUP_KIND="$KIND" "$VENV/bin/python" - <<'PY'
import os
import torchvision, cv2, av, ray, webdataset, mediapipe, dlib, diffusers, transformers, insightface, gradio  # noqa: F401
import onnxruntime, rapidocr  # noqa: F401
from mediapipe.python.solutions import face_detection, face_mesh  # noqa: F401
from importlib.metadata import version
import torch
print(f"[setup] ok: torch {torch.__version__}, torchvision {torchvision.__version__}, opencv {cv2.__version__}, "
      f"ray {ray.__version__}, mediapipe {mediapipe.__version__}, insightface {insightface.__version__}, "
      f"rapidocr {version('rapidocr')}")
if os.environ["HM_SETUP_KIND"] == "gpu":
    providers = onnxruntime.get_available_providers()
    print(f"[setup] CUDA: torch built for {torch.version.cuda}, device visible: {torch.cuda.is_available()}; "
          f"onnxruntime providers: {providers}")
    if torch.version.cuda is None:
        raise SystemExit("[setup] --gpu: pip installed a CPU build of torch; a local wheel folder (pip's find-links) "
                         "may ship it: rerun with PIP_FIND_LINKS= or TORCH_INDEX_URL=<a CUDA wheel index>")
    if "CUDAExecutionProvider" not in providers:
        print("[setup] warning: onnxruntime-gpu has no CUDA provider here (its CUDA major must match the driver's "
              "libraries); insightface and OCR will run on the CPU")
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
