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


def _github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_readme_internal_links_resolve():
    text = README.read_text()
    prose = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)  # a "# comment" in code is no heading
    anchors = {_github_anchor(h) for h in re.findall(r"^#{1,6} (.+)$", prose, re.M)}
    links = re.findall(r"\]\(#([^)]+)\)", text)
    assert links, "the README's contents list links to its sections"
    missing = sorted(set(links) - anchors)
    assert not missing, f"README links to sections that do not exist: {missing}"


def test_github_anchor_matches_github():
    assert _github_anchor("Objects located by colour (`LocatedReward`): what UVA's imagination gets right") \
        == "objects-located-by-colour-locatedreward-what-uvas-imagination-gets-right"
    assert _github_anchor("Speed (issue 7)") == "speed-issue-7"
