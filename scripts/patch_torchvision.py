"""Make a CUDA build of torchvision importable with a CPU build of torch (pytorch/vision#9085).

torchvision/_meta_registrations.py registers fake kernels for compiled ops (nms, roi_align...) with
``@torch.library.register_fake("torchvision::nms")``; when the compiled extension does not load, those ops do
not exist and the decorator raises at import time. This wraps each decorator so a missing op is skipped. It is an
environment fix for this kind of machine, applied by scripts/setup.sh; the product code never imports it.
"""

import importlib.util
import pathlib
import re
import sys

MARK = "# human-motion: guarded register_fake"


def main() -> int:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        print("[setup] torchvision is not installed; nothing to patch")
        return 0
    path = pathlib.Path(spec.origin).parent / "_meta_registrations.py"
    text = path.read_text()
    if MARK in text:
        if "def decorate(fn)" in text:
            return 0
        start = text.index(f"\n{MARK}\n")
        end = text.index("    return wrap\n", start) + len("    return wrap\n")
        text = text[:start] + text[end:]
        text = text.replace("@_hm_guard(torch.library.register_fake)(", "@torch.library.register_fake(")
    guard = (
        f"\n{MARK}\n"
        "def _hm_guard(register):\n"
        "    def wrap(op_name, *args, **kwargs):\n"
        "        def decorate(fn):\n"
        "            try:\n"
        "                return register(op_name, *args, **kwargs)(fn)\n"
        "            except (RuntimeError, AttributeError, ValueError):\n"
        "                return fn  # the op has no kernel in this build: nothing to fake\n"
        "        return decorate\n"
        "    return wrap\n"
    )
    # Insert the guard after the imports and route every register_fake call through it.
    new, n = re.subn(r"@torch\.library\.register_fake\(", "@_hm_guard(torch.library.register_fake)(", text)
    if n == 0:
        print("[setup] torchvision: no register_fake decorators found; leaving it unchanged")
        return 0
    lines = new.split("\n")
    last_import = max(i for i, line in enumerate(lines) if line.startswith(("import ", "from ")))
    lines.insert(last_import + 1, guard)
    path.write_text("\n".join(lines))
    print(f"[setup] torchvision: guarded {n} register_fake decorator(s) in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
