"""The README and the documentation site: first contact in one screen, links that resolve, the rules' tables written
from the catalogue, a site that builds with `--strict`, and the worked examples run as printed against a real server
(on both stores), their outputs as the page shows them."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from hajj_ledger.api import agencies
from hajj_ledger.domain.catalogue import TABLES
from hajj_ledger.domain.catalogue_doc import render_markdown
from hajj_ledger.domain.vocabulary import Role
from hajj_ledger.migrations import upgrade
from hajj_ledger.projections.schema import engine_for
from tests.support import season_opened, serving

ROOT = Path(__file__).parents[2]
README = ROOT / "README.md"
PAGES = sorted((ROOT / "docs").rglob("*.md"))
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")
DEMO = "http://127.0.0.1:8000"
# The demo's mission and company (the simulated season's, seed 1), whose ids the examples name.
DEMO_MISSION, DEMO_COMPANY = "mission-IDN-00013", "company-012"


def hook() -> ModuleType:
    """docs/hooks/site_hooks.py, the hooks mkdocs.yml names (a file of the docs, not a module of the package)."""
    spec = importlib.util.spec_from_file_location("site_hooks", ROOT / "docs" / "hooks" / "site_hooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fenced(text: str) -> list[tuple[int, str]]:
    """Each fenced block's first line number (1-based, the fence's) and body."""
    return [(text.count("\n", 0, found.start()) + 1, found[1]) for found in FENCE.finditer(text)]


def example(page: Path, marker: str) -> str:
    """The one shell block of `page` that contains `marker`."""
    blocks = [body for _, body in fenced(page.read_text()) if marker in body]
    assert len(blocks) == 1, f"{page.name}: {len(blocks)} blocks with {marker!r}"
    return blocks[0]


def slug(heading: str) -> str:
    """A heading's anchor, as GitHub and MkDocs' toc make it."""
    return re.sub(r"[\s]+", "-", re.sub(r"[^\w\s-]", "", heading.strip().lower()))


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    return {slug(found[1]) for found in re.finditer(r"^#{1,6} (.+)$", text, re.MULTILINE)}


def test_the_readme_starts_in_one_screen() -> None:
    text = README.read_text()
    blocks = fenced(text)
    writes = [line for line, body in blocks if "curl" in body and " -d " in body]
    assert len(text.splitlines()) <= 200
    assert blocks[0][0] <= 40, "the first command block"
    assert writes and writes[0] <= 100, "a write example"


@pytest.mark.parametrize("page", [README, ROOT / "ARCHITECTURE.md", *PAGES], ids=lambda page: page.name)
def test_every_relative_link_resolves(page: Path) -> None:
    text = FENCE.sub("", page.read_text())
    for found in LINK.finditer(text):
        target = found["target"]
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name} links to {target}: no such file"
        if anchor and linked.suffix == ".md":
            assert anchor in anchors(linked), f"{page.name} links to {target}: no such heading"


def test_the_rules_pages_show_the_catalogue_as_it_is() -> None:
    site = hook()
    pages = {page: page.read_text() for page in PAGES}
    for title, steps in TABLES.items():
        marked = [page for page, text in pages.items() if f"<!-- catalogue: {title} -->" in text]
        assert len(marked) == 1, f"{title}: on {len(marked)} pages"
        assert render_markdown(steps).rstrip("\n") in site.with_catalogue(pages[marked[0]])


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    mkdocs = Path(sys.executable).parent / "mkdocs"
    built = subprocess.run(
        [str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=120,
    )
    assert built.returncode == 0, built.stderr
    assert "VisaRequested" in (tmp_path / "site" / "journey" / "index.html").read_text()
    assert (tmp_path / "site" / "BENCHMARKS" / "index.html").exists()


def shown(block: str) -> list[str]:
    """The outputs a block shows, each on a comment line of its own after its command (… stands for what varies)."""
    return [line.removeprefix("# ") for line in block.splitlines() if re.match(r"# [{\[]", line)]


def run_as_printed(block: str, base: str, keys: dict[str, str]) -> list[str]:
    ran = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block.replace(DEMO, base)],
        capture_output=True,
        text=True,
        env={**os.environ, **keys},
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr
    return ran.stdout.splitlines()


def assert_shown(block: str, printed: list[str]) -> None:
    expected = shown(block)
    assert len(printed) == len(expected), printed
    for line, output in zip(expected, printed, strict=True):
        assert re.fullmatch(".*".join(map(re.escape, line.split("…"))), output), (line, output)


@pytest.fixture
def demo_server(store_url: str, tmp_path: Path) -> tuple[str, dict[str, str]]:
    """A real `hajj-ledger serve` on a store with season 1446 open, and a key for each role the examples use, under
    the names they give them (the demo's mission and company)."""
    engine = engine_for(store_url)
    upgrade(engine)
    scopes = {Role.MISSION: DEMO_MISSION, Role.COMPANY: DEMO_COMPANY}
    with engine.begin() as connection:
        keys = {
            role.name: agencies.add(connection, role, f"the {role}", scopes.get(role))[1]
            for role in (Role.MISSION, Role.COMPANY, Role.AMANAH, Role.CIVIL_DEFENCE)
        }
    engine.dispose()
    season_opened(store_url)
    return store_url, keys


def test_the_readme_example_runs_as_printed(demo_server: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    store_url, keys = demo_server
    block = example(README, "min_position")
    with serving({**os.environ, "HAJJ_LEDGER_DATABASE_URL": store_url}, tmp_path / "serve.log") as (base,):
        assert_shown(block, run_as_printed(block, base, keys))
