"""The docs stay a short front door with generated tables, and describe the software only."""

import ast
import importlib.util
import io
import json
import re
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC_PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").rglob("*.md"))]
CODE_DIRS = ["uva_plan", "planners", "examples", "benchmarks", "configs"]
# Words about how the work was done rather than what the software does.
PROCESS = re.compile(
    r"\bissues? #?\d+|\bthe [\w-]+ issue\b|\bsessions?\b|\bwhen I ran\b|\b(?:I|we) ran\b"
    r"|\bI (?:inspected|measured|tried|checked)\b|\bmy other jobs\b",
    re.I,
)


def _build_tables():
    spec = importlib.util.spec_from_file_location("build_tables", ROOT / "docs" / "build_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_is_short():
    n_lines = len((ROOT / "README.md").read_text().splitlines())
    assert n_lines <= 250, f"README.md has {n_lines} lines; move detail to docs/"


def test_tables_are_up_to_date(capsys):
    assert _build_tables().main(["--check"]) == 0, capsys.readouterr().err


def test_every_docs_table_shows_its_command():
    """Each generated table on a docs page records its command, and the page shows it."""
    missing = []
    for page in sorted((ROOT / "docs").rglob("*.md")):
        text = page.read_text()
        for name in re.findall(r"<!-- table: ([\w-]+) -->", text):
            spec = json.loads((ROOT / "docs" / "results" / f"{name}.json").read_text())
            commands = spec.get("command") or []
            commands = [commands] if isinstance(commands, str) else commands
            if not commands:
                missing.append(f"docs/results/{name}.json has no command")
            missing += [f"{page.relative_to(ROOT)} does not show {c!r}" for c in commands if c not in text]
    assert not missing, "\n".join(missing)


def test_check_names_a_stale_table(tmp_path, monkeypatch, capsys):
    build = _build_tables()
    page = tmp_path / "page.md"
    page.write_text("<!-- table: headline -->\n| stale |\n<!-- /table -->\n")
    monkeypatch.setattr(build, "documents", lambda: [page])
    monkeypatch.setattr(build, "ROOT", tmp_path)
    assert build.main(["--check"]) == 1
    assert "headline" in capsys.readouterr().err
    assert page.read_text().endswith("| stale |\n<!-- /table -->\n")  # --check never writes


def test_rates_carry_their_wilson_interval():
    build = _build_tables()
    assert build.format_cell({"successes": 8, "n": 200, "format": "pct1"}) == "4.0% [2.0, 7.7]"
    assert build.format_cell(["**", {"successes": 17, "n": 50, "format": "kn_p2"}, "**"]) \
        == "**17/50 = 0.34 [0.22, 0.48]**"
    with pytest.raises(ValueError, match="cell"):
        build.format_cell(3.5)


def _comments_and_docstrings(path: Path):
    """(line, text) of every comment and docstring of a Python file, or comment of a YAML file."""
    text = path.read_text()
    if path.suffix != ".py":
        for i, line in enumerate(text.splitlines(), 1):
            if "#" in line:
                yield i, line.split("#", 1)[1]
        return
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type == tokenize.COMMENT:
            yield token.start[0], token.string
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=False)
            if doc is not None:
                start = node.body[0].lineno
                for i, line in enumerate(doc.splitlines()):
                    yield start + i, line


def _process_words(items, where: str) -> list[str]:
    return [f"{where}:{line}: {text.strip()}" for line, text in items if PROCESS.search(text)]


def test_docs_describe_the_software_not_the_work():
    hits = []
    for page in DOC_PAGES:
        lines = enumerate(page.read_text().splitlines(), 1)
        hits += _process_words(lines, str(page.relative_to(ROOT)))
    assert not hits, "process words in the docs:\n" + "\n".join(hits)


def test_code_comments_describe_the_software_not_the_work():
    hits = []
    for folder in CODE_DIRS:
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix in (".py", ".yaml", ".yml") and "__pycache__" not in path.parts:
                hits += _process_words(_comments_and_docstrings(path), str(path.relative_to(ROOT)))
    assert not hits, "process words in comments or docstrings:\n" + "\n".join(hits)


def test_process_words_pattern():
    for text in ("see issue 7", "issue #12", "until this session", "the previous session's log",
                 "when I ran it", "we ran both",
                 "the figures of the DP-C issue"):
        assert PROCESS.search(text), text
    for text in ("run_episodes(resume=True)", "the sessionless loader", "I/O bound", "tissue 3"):
        assert not PROCESS.search(text), text
