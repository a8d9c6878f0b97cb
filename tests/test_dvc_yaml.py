"""dvc.yaml lists every module a stage's code runs, so a code change re-runs exactly the stages it affects.

The package's ``__init__.py`` only declares lazy exports, so it is not required as a dep.
"""

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "midlevel_emotion"


def _imports(path: Path) -> set[Path]:
    """Package modules and stage helpers that ``path`` imports (anywhere in the file, lazy imports too)."""
    found: set[Path] = set()
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative import inside the package
                base = node.module.split(".") if node.module else []
                names = [".".join(base)] if base else [a.name for a in node.names]
            elif node.module:
                parts = node.module.split(".")
                if parts[0] == "midlevel_emotion":
                    names = [".".join(parts[1:])] if len(parts) > 1 else [a.name for a in node.names]
                elif parts[0] == "_common":
                    found.add(ROOT / "stages" / "_common.py")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "midlevel_emotion" and len(parts) > 1:
                    names.append(".".join(parts[1:]))
                elif parts[0] == "_common":
                    found.add(ROOT / "stages" / "_common.py")
        for name in names:
            module = PACKAGE / f"{name.split('.')[0]}.py"
            if module.is_file():
                found.add(module)
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
def test_stage_deps_list_all_code_it_runs(name):
    stage = STAGES[name]
    script = ROOT / stage["cmd"].split()[1]
    deps = {ROOT / (d if isinstance(d, str) else next(iter(d))) for d in stage["deps"]}
    code = {script} | _closure(script)
    missing = sorted(str(p.relative_to(ROOT)) for p in code - deps)
    assert not missing, f"dvc.yaml stage {name} runs these files but does not list them as deps: {missing}"
    listed_code = {d for d in deps if d.suffix == ".py"}
    unused = sorted(str(p.relative_to(ROOT)) for p in listed_code - code)
    assert not unused, f"dvc.yaml stage {name} lists code it never imports: {unused}"
