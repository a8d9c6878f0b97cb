"""dvc.yaml lists the code a stage runs, as its script and the package's layer folders, so a code
change re-runs the stages whose layers it touches.

The package's ``__init__.py`` only declares lazy exports, so it is not required as a dep; a
subpackage's ``__init__.py`` runs whenever one of its modules is imported, so it is.
"""

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "midlevel_emotion"


def _module_files(dotted: str) -> set[Path]:
    """The files importing ``midlevel_emotion.<dotted>`` runs: each subpackage's ``__init__.py``
    on the way, then the module (a name that is no module adds nothing)."""
    found: set[Path] = set()
    path = PACKAGE
    for part in [p for p in dotted.split(".") if p]:
        path = path / part
        if (path / "__init__.py").is_file():
            found.add(path / "__init__.py")
        else:
            if path.with_suffix(".py").is_file():
                found.add(path.with_suffix(".py"))
            break
    return found


def _imports(path: Path) -> set[Path]:
    """Package modules and stage helpers that ``path`` imports (anywhere in the file, lazy imports too)."""
    found: set[Path] = set()
    package = list(path.relative_to(PACKAGE).parent.parts) if path.is_relative_to(PACKAGE) else []
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        modules: list[str] = []
        if isinstance(node, ast.ImportFrom):
            parts = node.module.split(".") if node.module else []
            if node.level:  # relative import: from the importing file's package upwards
                parts = package[:len(package) - (node.level - 1)] + parts
            elif parts and parts[0] == "midlevel_emotion":
                parts = parts[1:]
            else:
                if parts and parts[0] == "_common":
                    found.add(ROOT / "stages" / "_common.py")
                continue
            # `from pkg import name`: name may be an attribute or a submodule
            modules = [".".join(parts)] + [".".join(parts + [a.name]) for a in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "midlevel_emotion" and len(parts) > 1:
                    modules.append(".".join(parts[1:]))
                elif parts[0] == "_common":
                    found.add(ROOT / "stages" / "_common.py")
        for name in modules:
            found |= _module_files(name)
    return found


def _closure(start: Path) -> set[Path]:
    seen: set[Path] = set()
    todo = [start]
    while todo:
        path = todo.pop()
        for dep in _imports(path):
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_deps_list_the_code_it_runs_as_its_script_and_package_folders(name):
    """Deps are the stage's script, ``stages/_common.py`` and the package's layer folders whose
    modules it imports (DVC hashes a folder whole): every module the stage runs lies in a listed
    folder, and every listed folder holds one it runs."""
    stage = STAGES[name]
    script = ROOT / stage["cmd"].split()[1]
    deps = {ROOT / (d if isinstance(d, str) else next(iter(d))) for d in stage["deps"]}
    code = {script} | _closure(script)
    in_package = {p for p in code if p.is_relative_to(PACKAGE)}
    loose = sorted(str(p.relative_to(ROOT)) for p in code - in_package - deps)
    assert not loose, f"dvc.yaml stage {name} runs these files but does not list them as deps: {loose}"
    folders = {PACKAGE / p.relative_to(PACKAGE).parts[0] for p in in_package
               if len(p.relative_to(PACKAGE).parts) > 1}
    missing = sorted(str(f.relative_to(ROOT)) for f in folders - deps)
    assert not missing, f"dvc.yaml stage {name} imports from these folders but does not list them: {missing}"
    listed = {d for d in deps if d.is_relative_to(PACKAGE)}
    unused = sorted(str(d.relative_to(ROOT)) for d in listed - folders)
    assert not unused, f"dvc.yaml stage {name} lists package code it never imports: {unused}"
    assert all(d.is_dir() for d in listed), "package deps are layer folders, not single modules"


def test_python_caches_are_not_part_of_a_folder_dep():
    """A folder dep is hashed whole: Python's byte-code caches, which differ between machines and
    appear when a test or a stage runs, would make DVC see changed code."""
    ignored = (ROOT / ".dvcignore").read_text().split()
    assert "__pycache__/" in ignored and "*.pyc" in ignored
