"""The package's shape, checked: sizes a reader can take in, and the README's and ARCHITECTURE.md's
maps of the tree kept exact (issue 19: no module over about 400 lines, no function over about
60 lines of code; the layout sections name every module, and only modules that exist)."""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "midlevel_emotion"
MAX_MODULE_LINES = 400
MAX_FUNCTION_CODE_LINES = 60
PIPELINE_DATA = {"raw", "resampled", "spectrograms", "archives"}  # data/raw ... are the pipeline's folders


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def code_lines(path: Path, node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines of code in a function: its docstring, blank lines and comment lines not counted."""
    lines = path.read_text().splitlines()
    body = node.body
    has_doc = isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and isinstance(
        body[0].value.value, str)
    first = body[0].end_lineno + 1 if has_doc else body[0].lineno
    return sum(1 for line in lines[first - 1:node.end_lineno] if line.strip() and not line.strip().startswith("#"))


def test_no_module_is_over_400_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in modules()
            if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, f"split these by concept: {long}"


def test_no_function_is_over_60_lines_of_code():
    long = {}
    for path in [*modules(), *sorted((ROOT / "stages").glob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = code_lines(path, node)
                if n > MAX_FUNCTION_CODE_LINES:
                    long[f"{path.relative_to(ROOT)}:{node.name}"] = n
    assert not long, long


def test_the_size_check_counts_code_not_docstrings(tmp_path):
    path = tmp_path / "m.py"
    path.write_text('def f():\n    """Doc.\n\n    More."""\n    # why\n\n    a = 1\n    return a\n')
    node = ast.parse(path.read_text()).body[0]
    assert code_lines(path, node) == 2


def table_rows(text: str) -> dict[str, str]:
    """The README's "folder | modules" table: folder -> its modules cell."""
    rows = {}
    for line in text.splitlines():
        m = re.match(r"^\| `([a-z_]+)/`[^|]*\| (.+) \|$", line)
        if m:
            rows[m.group(1)] = m.group(2)
    return rows


def listed(cell: str, prefix: str = "") -> set[str]:
    """Module names in a cell: backticked words outside parentheses; ``sub/`` followed by
    ``(`a`, `b`: what)`` lists the modules of a subpackage."""
    names, depth, i = set(), 0, 0
    while i < len(cell):
        ch = cell[i]
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "`" and depth == 0:
            end = cell.index("`", i + 1)
            name = cell[i + 1:end]
            i = end
            if name.endswith("/"):
                group = cell[end + 1:].lstrip()
                assert group.startswith("("), f"{name} needs its modules in parentheses"
                inner = group[1:group.index(")")].split(":")[0]
                names |= {f"{prefix}{name}{sub}" for sub in re.findall(r"`([a-z_]+)`", inner)}
            else:
                names.add(prefix + name)
        i += 1
    return names


def test_the_readme_lists_exactly_the_modules_of_every_folder():
    rows = table_rows((ROOT / "README.md").read_text())
    folders = sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists())
    assert sorted(rows) == folders
    for folder, cell in rows.items():
        actual = {str(p.relative_to(PACKAGE / folder).with_suffix("")) for p in (PACKAGE / folder).rglob("*.py")
                  if p.name != "__init__.py"}
        assert listed(cell) == actual, f"README row `{folder}/`: listed {sorted(listed(cell) - actual)} "\
                                       f"that do not exist, missing {sorted(actual - listed(cell))}"


def test_the_table_parser_reads_subpackages_and_skips_notes():
    cell = "`main` (the entry point; `info`), `synthetic/` (`labels`, `score`: the corpus), `args`"
    assert listed(cell) == {"main", "synthetic/labels", "synthetic/score", "args"}


@pytest.mark.parametrize("doc", ["ARCHITECTURE.md", "README.md"])
def test_every_module_path_the_docs_name_exists(doc):
    """``folder/module`` and ``folder/module.function`` in the architecture's route and tables."""
    text = (ROOT / doc).read_text()
    folders = "|".join(p.name for p in PACKAGE.iterdir() if p.is_dir())
    missing = []
    for folder, module, function in re.findall(rf"\b({folders})/([a-z_0-9]+)(?:\.([a-z_0-9]+))?", text):
        path = PACKAGE / folder / f"{module}.py"
        if (PACKAGE / folder / module).is_dir() or (folder == "data" and module in PIPELINE_DATA):
            continue
        if not path.exists():
            missing.append(f"{folder}/{module}")
        elif function and function not in {n.name for n in ast.parse(path.read_text()).body
                                           if isinstance(n, (ast.FunctionDef, ast.ClassDef))}:
            missing.append(f"{folder}/{module}.{function}")
    assert not missing, f"{doc} names what does not exist: {missing}"
