"""The README's examples run as written, and every internal link of the docs resolves."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").rglob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _python_blocks(section: str) -> list[str]:
    text = README.read_text().split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", text, re.S)


def test_readme_api_example_runs():
    code = _python_blocks("API in five lines")[0]
    assert len(code.strip().splitlines()) == 5
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["obs"]["agent_pos"].shape == (2,)
    assert namespace["planner"].last_result is not None


def test_readme_simulator_example_runs():
    code = _python_blocks("API in five lines")[1]
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


def _prose(path: Path) -> str:
    """The page without its fenced code blocks: a "# comment" in code is no heading, no link."""
    return re.sub(r"^```.*?^```", "", path.read_text(), flags=re.M | re.S)


def _anchors(path: Path) -> set[str]:
    return {_github_anchor(h) for h in re.findall(r"^#{1,6} (.+)$", _prose(path), re.M)}


def test_internal_links_resolve():
    missing = []
    for page in PAGES:
        for target in LINK.findall(_prose(page)):
            if re.match(r"[a-z]+:", target):  # http(s), mailto: outside the repository
                continue
            file, _, anchor = target.partition("#")
            path = (page.parent / file).resolve() if file else page
            if not path.exists():
                missing.append(f"{page.relative_to(ROOT)} -> {target} (no such file)")
            elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
                missing.append(f"{page.relative_to(ROOT)} -> {target} (no such heading)")
    assert not missing, "broken links:\n" + "\n".join(missing)


def test_readme_links_to_every_docs_page():
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in LINK.findall(_prose(README))}
    pages = {p.resolve() for p in (ROOT / "docs").rglob("*.md")}
    assert not pages - linked, f"docs pages the README does not link: {sorted(pages - linked)}"


def test_github_anchor_matches_github():
    assert _github_anchor("Objects located by colour (`LocatedReward`): what UVA's imagination gets right") \
        == "objects-located-by-colour-locatedreward-what-uvas-imagination-gets-right"
    assert _github_anchor("Ranking only DP-C's typical proposals (the default planner)") \
        == "ranking-only-dp-cs-typical-proposals-the-default-planner"
