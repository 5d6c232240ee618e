"""The README and docs/: short enough to read, every link lands inside the repository, every benchmark runs."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# [text](target) outside code; images too. Autolinks and bare URLs are not relative links.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.M | re.S)


def _prose(page: Path) -> str:
    return FENCE.sub("", page.read_text())


def _anchors(page: Path) -> set[str]:
    """GitHub's heading ids: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#{1,6} (.+)$", _prose(page), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_the_readme_reads_in_five_minutes():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) < 250, len(lines)


def test_every_relative_link_resolves_inside_the_repository():
    broken = []
    for page in PAGES:
        for target in LINK.findall(_prose(page)):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page
            where = f"{page.relative_to(REPO)} → {target}"
            if not resolved.is_relative_to(REPO):
                broken.append(f"{where}: outside the repository")
            elif not resolved.exists():
                broken.append(f"{where}: no such file")
            elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
                broken.append(f"{where}: no such heading")
    assert not broken, "\n".join(broken)


def test_no_page_sends_the_reader_outside_the_repository_for_the_contract():
    # The API's reference is what the service serves at /docs and /openapi.json.
    for page in PAGES:
        text = page.read_text()
        assert "API.md" not in text, page
        assert "app/storage.py" not in text, page  # a package now: app/storage/


def _bench_scripts() -> set[str]:
    helpers = {"common", "shared_sets", "run_all"}
    return {p.stem for p in (REPO / "bench").glob("*.py")} - helpers


def test_make_bench_runs_every_benchmark_script_and_docs_give_its_full_command():
    tree = ast.parse((REPO / "bench" / "run_all.py").read_text())
    benches = next(
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", None) == "BENCHES"
    )
    assert isinstance(benches, ast.Dict)
    listed = {key.value for key in benches.keys if isinstance(key, ast.Constant)}
    assert listed == _bench_scripts(), listed ^ _bench_scripts()
    assert re.search(r"^bench: .*\n\t\$\(BIN\)/python bench/run_all\.py", (REPO / "Makefile").read_text(), re.M)
    docs = (REPO / "docs" / "benchmarks.md").read_text()
    for name in sorted(listed):
        assert f"bench/{name}.py" in docs, f"docs/benchmarks.md does not say how to run bench/{name}.py"
