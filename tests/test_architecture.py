"""The layers are enforced, not described: import-linter's contracts (.importlinter) run here.

The contracts hold over the package, and they bite: a copy of the package in which a core module imports
the front ends (or a bottom module imports another of ours) fails them.  No module imports itself through
others (no import cycles, lazy imports included), and every module imports with ``fcntl`` hidden (as on
Windows), in a fresh process.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import invokeai_model_install

REPO = Path(__file__).resolve().parents[1]
CONTRACTS = REPO / ".importlinter"
PACKAGE = Path(invokeai_model_install.__file__).resolve().parent

_LINT = textwrap.dedent(
    """
    import sys
    from importlinter.cli import lint_imports
    sys.exit(lint_imports(config_filename=sys.argv[1], no_cache=True, no_logo=True))
    """
)


def _lint(package_parent: Path) -> subprocess.CompletedProcess:
    if importlib.util.find_spec("importlinter") is None:
        pytest.fail("import-linter is not installed: pip install -e '.[test]' (it is in the test extra)")
    env = {**os.environ, "PYTHONPATH": str(package_parent)}
    return subprocess.run([sys.executable, "-c", _LINT, str(CONTRACTS)], cwd=package_parent, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_import_contracts_hold():
    result = _lint(PACKAGE.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def _copy_package(dest: Path) -> Path:
    copy = dest / "invokeai_model_install"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "data", "static", "*.json", "*.txt"))
    return copy


def test_a_core_module_importing_the_front_ends_breaks_the_contracts(tmp_path):
    copy = _copy_package(tmp_path)
    layout = copy / "root" / "layout.py"
    layout.write_text(layout.read_text() + "\n\ndef _front_end():\n    from invokeai_model_install.app import cli  # noqa\n")
    result = _lint(tmp_path)
    assert result.returncode != 0, result.stdout
    assert "invokeai_model_install.root.layout -> invokeai_model_install.app.cli" in result.stdout


def test_the_bottom_modules_import_nothing_of_ours(tmp_path):
    copy = _copy_package(tmp_path)
    units = copy / "units.py"
    units.write_text(units.read_text() + "\n\nfrom invokeai_model_install import errors  # noqa\n")
    result = _lint(tmp_path)
    assert result.returncode != 0, result.stdout
    assert "invokeai_model_install.units -> invokeai_model_install.errors" in result.stdout


_NO_FCNTL = textwrap.dedent(
    """
    import importlib, pkgutil, sys

    class HideFcntl:
        def find_spec(self, name, path=None, target=None):
            if name == "fcntl":
                raise ImportError("No module named 'fcntl' (hidden: Windows has none)")
            return None

    sys.modules.pop("fcntl", None)
    sys.meta_path.insert(0, HideFcntl())
    import invokeai_model_install as pkg

    names = [m.name for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + ".") if not m.name.endswith("__main__")]
    for name in names:
        importlib.import_module(name)
    assert "fcntl" not in sys.modules
    print(len(names))
    """
)


def test_every_module_imports_without_fcntl():
    result = subprocess.run([sys.executable, "-c", _NO_FCNTL], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.split()[-1]) > 40  # every module was tried, not an empty walk


def _cycles() -> list[list[str]]:
    """Groups of our modules that import each other, directly or through others (lazy imports count)."""
    import grimp  # comes with import-linter

    graph = grimp.build_graph("invokeai_model_install", include_external_packages=False)
    adj = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in sorted(graph.modules)}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in adj[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for module in adj:
        if module not in index:
            visit(module)
    return found


def test_no_module_imports_itself_through_others():
    assert _cycles() == []
