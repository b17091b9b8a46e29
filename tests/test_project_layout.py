"""The README's project layout matches the tree, and the docs the code cites exist."""

import re
import subprocess

from helpers import REPO_ROOT


def _layout_block():
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("## Project layout", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("    ")]


def _named_paths(lines):
    """The paths of the layout block: `parent/` lines open a folder for the indented names."""
    paths, parent = [], ""
    for line in lines:
        indent = len(line) - len(line.lstrip())
        names = line.strip().split("  ")[0]
        if indent == 4:
            parent = names if names.endswith("/") and " " not in names else ""
            prefix = ""
        else:
            prefix = parent
        for name in re.split(r"[,\s]+", names):
            if name and re.fullmatch(r"[\w./-]+", name):
                paths.append(prefix + name)
    return paths


def test_every_path_in_the_layout_exists():
    paths = _named_paths(_layout_block())
    assert len(paths) > 20
    missing = [path for path in paths if not (REPO_ROOT / path).exists()]
    assert not missing, missing


def test_every_package_module_is_in_the_layout():
    named = set(_named_paths(_layout_block()))
    package = REPO_ROOT / "keras_mhdeblur"
    entries = [path for path in package.iterdir()
               if (path.suffix == ".py" and path.name not in ("__init__.py", "__main__.py"))
               or (path.is_dir() and (path / "__init__.py").exists())]
    unlisted = [path.name for path in entries
                if f"keras_mhdeblur/{path.name}{'/' if path.is_dir() else ''}" not in named]
    assert not unlisted, unlisted


def test_the_code_cites_docs_in_the_repository():
    tracked = subprocess.run(["git", "ls-files", "*.py", "*.md", "*.yaml"], cwd=REPO_ROOT,
                             capture_output=True, text=True, check=True).stdout.split()
    tracked = [path for path in tracked if (REPO_ROOT / path).is_file()]
    external = [path for path in tracked
                if re.search(r"\bMETHOD \d|\.\./shared/docs", (REPO_ROOT / path).read_text())]
    assert not external, external
    method = (REPO_ROOT / "docs" / "method.md").read_text()
    headings = set(re.findall(r"^#+ (.+)$", method, flags=re.MULTILINE))
    anchors = {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}
    cited_headings, cited_anchors = set(), set()
    for path in tracked:
        text = (REPO_ROOT / path).read_text()
        cited_headings |= set(re.findall(r"method\.md, [\"']([^\"']+)[\"']", text))
        cited_headings |= set(re.findall(r"[\"']([^\"']+)[\"'] section of docs/method\.md", text))
        cited_anchors |= set(re.findall(r"method\.md#([\w-]+)", text))
    assert cited_headings, "no citation of docs/method.md found"
    assert cited_headings <= headings, sorted(cited_headings - headings)
    assert cited_anchors <= anchors, sorted(cited_anchors - anchors)
    # The other pages are cited the same way as docs/method.md, by page and heading.
    missing = []
    for path in tracked:
        for page, heading in re.findall(r"docs/(\w+)\.md, [\"']([^\"']+)[\"']",
                                        (REPO_ROOT / path).read_text()):
            doc = REPO_ROOT / "docs" / f"{page}.md"
            if not doc.is_file() or heading not in re.findall(r"^#+ (.+)$", doc.read_text(),
                                                              flags=re.MULTILINE):
                missing.append(f"{path}: docs/{page}.md, {heading!r}")
    assert not missing, missing
