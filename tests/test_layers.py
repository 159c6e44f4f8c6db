"""The package's import graph follows the layer order of the README's Layout table:
every import (top-level or inside a function) of another genret_jax package is of a
lower layer, and no chain of imports between modules comes back to where it started."""

from __future__ import annotations

import ast
import os
import pathlib
import re
import subprocess
import sys
import textwrap

from tests.conftest import REPO


def readme_layers(readme: pathlib.Path = REPO / "README.md") -> dict[str, int]:
  """{top-level name ('data', 'config', ...): layer} from the README's Layout table."""
  section = readme.read_text().split("## Layout", 1)[1].split("\n## ", 1)[0]
  layers = {}
  for layer, paths in re.findall(r"^\| (\d+) \| (.+?) \|", section, re.M):
    for path in re.findall(r"`genret_jax/([a-z_]+)(?:\.py)?`", paths):
      layers[path] = int(layer)
  return layers


def module_imports(root: pathlib.Path = REPO) -> dict[str, set[str]]:
  """{module: genret_jax modules it imports anywhere in its body}; `from pkg import
  sub` counts as `pkg.sub` when `sub` is a module, else as `pkg` (its __init__)."""
  modules = {".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__"): p
             for p in (root / "genret_jax").rglob("*.py")}
  graph = {}
  for name, path in modules.items():
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
      if isinstance(node, ast.Import):
        targets.update(a.name for a in node.names)
      elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        for a in node.names:
          full = f"{node.module}.{a.name}"
          targets.add(full if full in modules else node.module)
    graph[name] = {t for t in targets if t in modules and t != name}
  return graph


def _top(module: str) -> str:
  return module.split(".")[1] if module.count(".") else ""


def upward_imports(graph: dict[str, set[str]], layers: dict[str, int]) -> list[str]:
  return sorted(f"{m} (layer {layers[_top(m)]}) imports {t} (layer {layers[_top(t)]})"
                for m, targets in graph.items() if _top(m) for t in targets
                if _top(t) and _top(t) != _top(m) and layers[_top(t)] >= layers[_top(m)])


def import_cycles(graph: dict[str, set[str]]) -> list[str]:
  state: dict[str, int] = {}     # 1 = on the current path, 2 = done
  cycles = []

  def visit(node: str, path: list[str]) -> None:
    state[node] = 1
    for nxt in sorted(graph[node]):
      if state.get(nxt) == 1:
        cycles.append(" -> ".join((path + [node])[(path + [node]).index(nxt):] + [nxt]))
      elif nxt not in state:
        visit(nxt, path + [node])
    state[node] = 2

  for module in sorted(graph):
    if module not in state:
      visit(module, [])
  return cycles


def test_every_package_has_a_layer_and_imports_only_lower_layers():
  layers, graph = readme_layers(), module_imports()
  tops = {_top(m) for m in graph} - {""}
  assert tops <= set(layers), f"not in the README's Layout table: {sorted(tops - set(layers))}"
  assert layers["errors"] == 0 and layers["config"] < layers["pipeline"] < layers["main"]
  assert not upward_imports(graph, layers), "\n".join(upward_imports(graph, layers))


def test_no_import_cycle_between_modules():
  assert not import_cycles(module_imports()), "\n".join(import_cycles(module_imports()))


def test_the_checks_find_function_local_upward_imports_and_cycles(tmp_path):
  """On a made-up package: config imports pipeline inside a function (how the old
  config -> pipeline cycle hid), and pipeline.a / pipeline.b import each other."""
  pkg = tmp_path / "genret_jax"
  (pkg / "pipeline").mkdir(parents=True)
  (pkg / "__init__.py").write_text("")
  (pkg / "config.py").write_text("def f():\n  from genret_jax.pipeline import a\n")
  (pkg / "pipeline" / "__init__.py").write_text("from genret_jax import config\n")
  (pkg / "pipeline" / "a.py").write_text("import genret_jax.pipeline.b\n")
  (pkg / "pipeline" / "b.py").write_text("from genret_jax.pipeline import a\n")
  (tmp_path / "README.md").write_text(
      "## Layout\n\n| layer | path | what |\n|---|---|---|\n"
      "| 1 | `genret_jax/config.py` | c |\n| 2 | `genret_jax/pipeline` | p |\n\n## Next\n")
  graph, layers = module_imports(tmp_path), readme_layers(tmp_path / "README.md")
  assert layers == {"config": 1, "pipeline": 2}
  assert upward_imports(graph, layers) == [
      "genret_jax.config (layer 1) imports genret_jax.pipeline.a (layer 2)"]
  assert "genret_jax.pipeline.a -> genret_jax.pipeline.b -> genret_jax.pipeline.a" in \
      import_cycles(graph)


def test_importing_the_pipeline_does_not_start_the_xla_backend():
  """jax.distributed.initialize must come before anything touches the backend; an import
  that runs a JAX computation (bm25s does) breaks every multi-process job."""
  code = ("import jax\nfrom jax._src import xla_bridge\nimport genret_jax.main, genret_jax.pipeline\n"
          "print(bool(xla_bridge._backends))")
  out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                       env={**os.environ, "JAX_PLATFORMS": "cpu"}, timeout=300, check=True)
  assert out.stdout.strip() == "False", out.stderr[-2000:]


# Modules whose docstring states one rule for all their function-local imports.
LOCAL_IMPORT_POLICIES = {
    "genret_jax/bench/scale.py": "each part imports what it uses, so its time and RSS are its own",
}


def unexplained_local_imports(root: pathlib.Path = REPO) -> list[str]:
  """'path:line' of each import inside a function with no comment saying why: a
  `#` line right above its group of imports (pylint pragmas do not count)."""
  out = []
  for path in sorted((root / "genret_jax").rglob("*.py")):
    rel = path.relative_to(root).as_posix()
    if rel in LOCAL_IMPORT_POLICIES:
      continue
    lines = path.read_text().splitlines()
    for fn in ast.walk(ast.parse("\n".join(lines), rel)):
      if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
        continue
      for node in ast.walk(fn):
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
          continue
        i = node.lineno - 2        # the line above, 0-based
        while i >= 0 and (lines[i].strip().startswith(("import ", "from "))
                          or lines[i].strip().startswith("# pylint:")):
          i -= 1
        above = lines[i].strip() if i >= 0 else ""
        if not (above.startswith("#") and not above.startswith("# pylint:")):
          out.append(f"{rel}:{node.lineno}")
  return sorted(set(out))


def test_function_local_imports_say_why():
  """Imports go at the top of the module; one inside a function (an optional or heavy
  dependency, the order JAX must start in) carries a comment with the reason."""
  assert not unexplained_local_imports(), "\n".join(unexplained_local_imports())


def test_the_local_import_check_finds_an_unexplained_one(tmp_path):
  (tmp_path / "genret_jax").mkdir()
  (tmp_path / "genret_jax" / "m.py").write_text(
      "def f():\n  import os  # pylint: disable=g-import-not-at-top\n"
      "def g():\n  # torch is optional.\n  import torch\n  import transformers\n"
      "def h():\n  x = 1\n  # pylint: disable=g-import-not-at-top\n  import json\n")
  assert unexplained_local_imports(tmp_path) == ["genret_jax/m.py:10", "genret_jax/m.py:2"]


def test_config_files_load_without_tensorflow_or_the_pipeline():
  """configs/*.py are loaded while flags are parsed, before main starts JAX (after
  jax.distributed) and TensorFlow under a quiet stderr: they import genret_jax.config only."""
  code = textwrap.dedent("""
      import pathlib, sys
      from genret_jax import config
      for path in sorted(pathlib.Path("configs").rglob("*.py")):
        config.load_sibling(str(path.resolve()), path.name).get_config()
      print(sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "seqio", "bm25s")
                   or m.startswith("genret_jax.pipeline")))
      """)
  out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                       env={**os.environ, "JAX_PLATFORMS": "cpu"}, timeout=300, check=True)
  assert out.stdout.strip() == "[]", out.stdout[-2000:] + out.stderr[-2000:]
