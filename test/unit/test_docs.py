"""The docs stand alone: every page under docs/ is reachable from docs/README.md, every relative link in
the README and the docs resolves, and the README stays a reference (no commit hash, bounded length)."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def links(page: Path) -> set[Path]:
    """Files a markdown page links to by relative path (web addresses are not followed)."""
    return {(page.parent / target).resolve() for target in LINK.findall(page.read_text())
            if "://" not in target and not target.startswith("mailto:")}


def test_every_relative_link_resolves():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    broken = {str(p.relative_to(ROOT)): sorted(str(t) for t in links(p) if not t.exists()) for p in pages}
    assert {page: targets for page, targets in broken.items() if targets} == {}


def test_every_docs_file_is_reachable_from_the_docs_index():
    seen, todo = set(), [(ROOT / "docs" / "README.md").resolve()]
    while todo:
        page = todo.pop()
        if page in seen:
            continue
        seen.add(page)
        if page.suffix == ".md" and page.exists():
            todo += [t for t in links(page) if t.is_relative_to(ROOT / "docs")]
    files = {p.resolve() for p in (ROOT / "docs").rglob("*") if p.is_file()}
    assert sorted(str(p.relative_to(ROOT)) for p in files - seen) == []


def test_readme_is_a_reference():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 350
    assert re.findall(r"[0-9a-f]{7}", readme) == [], "commit hashes belong in docs/benchmarks or CHANGELOG"
    assert "(docs/README.md)" in readme or "docs/README.md" in readme
