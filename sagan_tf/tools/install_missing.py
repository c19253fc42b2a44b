"""Adds to a Python environment that already has a TensorFlow only what is missing.

`./run.sh --tpu=...` runs it in `.venv-tpu` when that venv sees a TensorFlow
(a Cloud TPU VM's preinstalled one through the system site-packages, or one
installed before). A package is missing when no distribution of its name is
installed, whatever the version: the system's versions are the ones its
TensorFlow was built with. Missing packages of requirements-base.txt are
installed at their pins; those of requirements-tpu-nodeps.txt (tf-keras,
tensorflow-hub, tensorflow-gan, which declare a dependency on the plain
`tensorflow` distribution) with --no-deps, tf-keras at the installed
TensorFlow's major.minor. So no second TensorFlow is ever installed.

Standard library only (it runs before anything is installed).
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
from typing import List

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def requirements(path: str) -> List[str]:
  """The requirement lines of a requirements file (no comments, no -r)."""
  out = []
  with open(os.path.join(ROOT, path)) as f:
    for line in f:
      line = line.split("#", 1)[0].strip()
      if line and not line.startswith("-"):
        out.append(line)
  return out


def _name(requirement: str) -> str:
  return re.split(r"[=<>~!\[; ]", requirement, maxsplit=1)[0]


def missing(reqs: List[str]) -> List[str]:
  """The requirements with no installed distribution of their name."""
  out = []
  for r in reqs:
    try:
      importlib.metadata.version(_name(r))
    except importlib.metadata.PackageNotFoundError:
      out.append(r)
  return out


def tensorflow_version() -> str:
  """Version of the installed TensorFlow, whichever distribution provides it."""
  for dist in importlib.metadata.packages_distributions().get("tensorflow", []):
    return importlib.metadata.version(dist)
  raise SystemExit("install_missing: no TensorFlow in this environment.")


def main() -> int:
  major_minor = ".".join(tensorflow_version().split(".")[:2])
  nodeps = [f"tf-keras~={major_minor}.0" if _name(r) == "tf-keras" else r
            for r in requirements("requirements-tpu-nodeps.txt")]
  pip = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "-q"]
  for reqs, extra in ((missing(requirements("requirements-base.txt")), []),
                      (missing(nodeps), ["--no-deps"])):
    if reqs:
      print(f"install_missing: installing {' '.join(reqs)}", file=sys.stderr)
      subprocess.check_call(pip + extra + reqs)
  return 0


if __name__ == "__main__":
  sys.exit(main())
