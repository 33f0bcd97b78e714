"""The README's five-line API example runs as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_api_example_runs():
    text = README.read_text()
    section = text.split("## API in five lines", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len(code.strip().splitlines()) == 5
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["obs"]["agent_pos"].shape == (2,)
    assert namespace["planner"].last_result is not None


def test_readme_names_the_two_commands():
    text = README.read_text()
    assert "make demo" in text and "make test" in text
