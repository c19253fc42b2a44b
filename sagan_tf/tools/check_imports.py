"""Checks that the package's imports run one way: `python -m sagan_tf.tools.check_imports`.

Reads every module of sagan_tf/ and tfrecords_tools/ with `ast` (nothing is
imported, so it runs in a second without TensorFlow) and fails (exit 1) when

* the module graph has a cycle: every import counts, the ones inside
  functions too (they hide cycles, they do not remove them), and importing
  a.b.c also imports the packages a and a.b (their __init__ modules);
* an import goes against LAYERS: a module may import its own unit and the
  units of lower layers only (a unit is a package such as sagan_tf.eval or a
  top-level module such as sagan_tf.config);
* a function-level import of one of the package's own modules is not in
  LAZY_ALLOWED (the one reason for them: `--help` stays fast).

It prints the layers and the function-level imports it found (external ones,
e.g. TensorFlow inside bench's functions or optional packages such as
tensorflow_hub, are listed but allowed).
"""

from __future__ import annotations

import ast
import os
import sys
from typing import Dict, Iterable, List, NamedTuple, Optional, Sequence, Set, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGES = ("sagan_tf", "tfrecords_tools")

# Lowest first. A unit imports only its own modules and units of lower layers.
LAYERS: Tuple[Tuple[str, ...], ...] = (
    ("sagan_tf", "sagan_tf.errors", "sagan_tf.atomic_write", "sagan_tf.platform_info",
     "sagan_tf.quiet_start"),
    ("sagan_tf.config", "sagan_tf.image_grid"),                 # no TensorFlow
    ("sagan_tf.losses", "sagan_tf.layers", "sagan_tf.data",
     "sagan_tf.compat", "sagan_tf.attention_image"),            # attention_image: numpy
    ("sagan_tf.models",),
    ("sagan_tf.run_dir", "sagan_tf.strategy"),                  # config.json, checkpoints; devices
    ("sagan_tf.eval", "sagan_tf.export"),
    ("sagan_tf.train",),                                        # self-eval uses eval
    ("sagan_tf.tools",),                                        # sample, attention, parity
    ("sagan_tf.bench", "tfrecords_tools"),
    ("sagan_tf.main",),                                         # reads the flags
)

# Modules allowed function-level imports of the package's own modules, and
# why. (main's lazy import of the chosen mode goes through importlib, which
# keeps `./run.sh --help` free of TensorFlow; it is not an import statement.)
_SCRIPT = "a command-line script: --help answers before TensorFlow loads"
LAZY_ALLOWED: Dict[str, str] = {
    "sagan_tf.data.shapes": "a numpy renderer (and script); TensorFlow only for tf.data",
    "sagan_tf.tools.parity_check": _SCRIPT,
    "tfrecords_tools.convert_common": _SCRIPT,
    "tfrecords_tools.inspect_tfrecords": _SCRIPT,
}


class Import(NamedTuple):
  importer: str
  imported: str
  line: int
  in_function: bool
  implied: bool  # a package whose __init__ runs because a module inside it is imported


def module_files(root: str = ROOT) -> Dict[str, str]:
  """{module name: path} of every .py file under PACKAGES."""
  out = {}
  for package in PACKAGES:
    for dirpath, dirnames, filenames in os.walk(os.path.join(root, package)):
      dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "__")))
      for name in sorted(filenames):
        if name.endswith(".py"):
          rel = os.path.relpath(os.path.join(dirpath, name), root)[:-3]
          parts = rel.split(os.sep)
          if parts[-1] == "__init__":
            parts = parts[:-1]
          out[".".join(parts)] = os.path.join(dirpath, name)
  return out


def _resolve(name: str, modules: Iterable[str]) -> Optional[str]:
  """The longest known module that `name` is or lies inside (a.b.func -> a.b)."""
  modules = set(modules)
  parts = name.split(".")
  for n in range(len(parts), 0, -1):
    candidate = ".".join(parts[:n])
    if candidate in modules:
      return candidate
  return None


def imports_of(module: str, path: str, modules: Sequence[str]) -> List[Import]:
  """The package-internal imports of one module (and the packages they imply)."""
  with open(path, encoding="utf-8") as f:
    tree = ast.parse(f.read(), filename=path)
  found: List[Import] = []

  def add(name: str, line: int, in_function: bool):
    target = _resolve(name, modules)
    if target is None or target == module:
      return
    found.append(Import(module, target, line, in_function, False))
    parts = target.split(".")
    for n in range(1, len(parts)):  # importing a.b.c runs a/__init__ and a/b/__init__ first
      parent = ".".join(parts[:n])
      if parent in modules and not module.startswith(parent + "."):
        found.append(Import(module, parent, line, in_function, True))

  def visit(node, in_function: bool):
    for child in ast.iter_child_nodes(node):
      inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                ast.Lambda))
      if isinstance(child, ast.Import):
        for alias in child.names:
          add(alias.name, child.lineno, in_function)
      elif isinstance(child, ast.ImportFrom) and child.module and not child.level:
        for alias in child.names:
          add(f"{child.module}.{alias.name}", child.lineno, in_function)
      visit(child, inner)

  visit(tree, False)
  return found


def external_lazy_imports(path: str) -> List[Tuple[int, str]]:
  """(line, module) of function-level imports of modules outside PACKAGES."""
  with open(path, encoding="utf-8") as f:
    tree = ast.parse(f.read(), filename=path)
  out = []
  for fn in ast.walk(tree):
    if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
      for node in ast.walk(fn):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                 [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
        for name in names:
          if name.split(".")[0] not in PACKAGES:
            out.append((node.lineno, name))
  return sorted(set(out))


def unit_of(module: str) -> str:
  units = [u for layer in LAYERS for u in layer]
  # The root package stands for its own __init__ only: a new top-level module
  # must be placed in LAYERS.
  best = max((u for u in units if module == u or
              (u not in PACKAGES[:1] and module.startswith(u + "."))), key=len, default=None)
  if best is None:
    raise ValueError(f"{module} is in no unit of LAYERS; add it there")
  return best


def layer_of(unit: str) -> int:
  return next(i for i, layer in enumerate(LAYERS) if unit in layer)


def find_cycles(edges: Dict[str, Set[str]]) -> List[List[str]]:
  """Strongly connected components with more than one module (Tarjan)."""
  index: Dict[str, int] = {}
  low: Dict[str, int] = {}
  stack: List[str] = []
  on_stack: Set[str] = set()
  out: List[List[str]] = []
  counter = [0]

  def strongconnect(v: str):
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on_stack.add(v)
    for w in sorted(edges.get(v, ())):
      if w not in index:
        strongconnect(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      component = []
      while True:
        w = stack.pop()
        on_stack.discard(w)
        component.append(w)
        if w == v:
          break
      if len(component) > 1:
        out.append(sorted(component))

  sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))
  for v in sorted(edges):
    if v not in index:
      strongconnect(v)
  return out


def check(root: str = ROOT) -> Tuple[List[str], List[Import], Dict[str, List[Tuple[int, str]]]]:
  """(problems, function-level internal imports, {module: external lazy imports})."""
  files = module_files(root)
  modules = sorted(files)
  problems: List[str] = []
  all_imports: List[Import] = []
  for module in modules:
    all_imports += imports_of(module, files[module], modules)
  for module in modules:
    try:
      unit_of(module)
    except ValueError as e:
      problems.append(str(e))
  edges: Dict[str, Set[str]] = {m: set() for m in modules}
  for imp in all_imports:
    edges[imp.importer].add(imp.imported)
  for cycle in find_cycles(edges):
    problems.append("import cycle: " + " <-> ".join(cycle))
  direct = sorted({i for i in all_imports if not i.implied})
  unit_edges: Dict[str, Set[str]] = {}
  for imp in direct:
    try:
      unit_edges.setdefault(unit_of(imp.importer), set()).add(unit_of(imp.imported))
    except ValueError:
      pass  # reported below
  for cycle in find_cycles(unit_edges):
    problems.append("cycle between units: " + " <-> ".join(cycle))
  for imp in direct:
    try:
      a, b = unit_of(imp.importer), unit_of(imp.imported)
    except ValueError:
      continue  # reported above
    if a != b and b != "sagan_tf" and layer_of(b) >= layer_of(a):
      problems.append(f"{imp.importer}:{imp.line} imports {imp.imported}: {b} is not in a "
                      f"layer below {a} (LAYERS)")
  lazy = [i for i in direct if i.in_function]
  for imp in lazy:
    if imp.importer not in LAZY_ALLOWED:
      problems.append(f"{imp.importer}:{imp.line} imports {imp.imported} inside a function; "
                      "import it at the top (or say in LAZY_ALLOWED why not)")
  external = {m: external_lazy_imports(files[m]) for m in modules}
  return problems, lazy, {m: v for m, v in external.items() if v}


def main(argv: Optional[Sequence[str]] = None) -> int:
  del argv
  problems, lazy, external = check()
  print("layers (lowest first; each imports only its own unit and lower layers):")
  for i, layer in enumerate(LAYERS):
    print(f"  {i}: {' | '.join(layer)}")
  print(f"function-level imports of the package's modules: {len(lazy)}")
  for imp in lazy:
    print(f"  {imp.importer}:{imp.line} -> {imp.imported}")
  print("function-level imports of other packages (heavy or optional; allowed):")
  for module, found in external.items():
    print(f"  {module}: " + ", ".join(f"{name} (line {line})" for line, name in found))
  if problems:
    print(f"\n{len(problems)} problem(s):")
    for p in problems:
      print("  " + p)
    return 1
  print("\nOK: no cycle, every import follows the layers.")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
