"""The layers of ARCHITECTURE.md, enforced by a tool: import-linter's contracts in pyproject.toml
([tool.importlinter]) hold for the package, and they do catch an import that breaks them.

import-linter (grimp) reads the source statically: every import counts, those inside
functions too, and chains through other modules (a -> b -> c) as well as direct imports.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(cwd: Path, pythonpath: Path) -> subprocess.CompletedProcess:
    """`lint-imports` on `cwd`/pyproject.toml, importing the package from `pythonpath`."""
    assert LINT_IMPORTS.exists(), f"{LINT_IMPORTS} is missing: install the test extras (scripts/venv.sh)"
    # COLUMNS: rich (import-linter's output) wraps long lines at the terminal's width
    env = {**os.environ, "PYTHONPATH": str(pythonpath), "COLUMNS": "500"}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", "--no-logo", "pyproject.toml"],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_the_package_keeps_its_import_contracts():
    result = lint_imports(ROOT, ROOT / "src")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert " 0 broken" in output, output


def test_an_upward_import_or_an_unplaced_module_breaks_the_contracts(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(ROOT / "src" / "midlevel_emotion", src / "midlevel_emotion",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    package = src / "midlevel_emotion"
    # the lowest layer reaching the top one, from inside a function (import-linter counts it)
    with (package / "core" / "constants.py").open("a") as f:
        f.write("\n\ndef _upward():\n    import numpy  # noqa: F401\n    from ..cli import main  # noqa: F401\n")
    # a new module in no layer (the layers contract is exhaustive)
    (package / "unplaced.py").write_text('"""A module that no layer lists."""\n')

    result = lint_imports(tmp_path, src)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "midlevel_emotion.core.constants -> midlevel_emotion.cli.main" in output, output  # the copy was read
    assert "unplaced" in output, output
    # the layers (the command line on top), and constants free of torch and numpy
    for contract in ("layers:", "names, params and their schema import nothing heavy"):
        assert any(line.startswith(contract) and line.rstrip().endswith("BROKEN")
                   for line in output.splitlines()), f"{contract!r} not broken:\n{output}"


def test_every_error_the_package_reports_lives_in_errors_and_derives_from_its_base():
    """One hierarchy in one module: the stage wrapper and the CLI decide "one line or traceback"
    by type (``isinstance(err, MidlevelError)``), so a new error class elsewhere would be a bug's
    traceback by accident. Private control-flow exceptions that never leave their module (the
    retry signals of ``request``) are the only other ones."""
    import ast
    import inspect

    from midlevel_emotion.core import errors

    package = Path(errors.__file__).parents[1]
    elsewhere = []
    for path in sorted(package.rglob("*.py")):
        if path.name == "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and (node.name.endswith(("Error", "Exception"))
                                                   and not node.name.startswith("_")):
                elsewhere.append(f"{path.relative_to(package)}: {node.name}")
    assert not elsewhere, f"error classes outside errors.py: {elsewhere}"
    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass) if c.__module__ == errors.__name__]
    assert len(classes) >= 17 and all(issubclass(c, errors.MidlevelError) for c in classes)
