"""MkDocs hooks (mkdocs.yml): the rules' tables written from the catalogue as the site is built, and the repository's
top-level pages (ARCHITECTURE.md, BENCHMARKS.md) made part of the site.

A page asks for a table with a marker on a line of its own, `<!-- catalogue: Journey steps -->` (a title of
`TABLES`), so the docs show the catalogue as it is and cannot drift from it."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

from hajj_ledger.domain.catalogue import TABLES
from hajj_ledger.domain.catalogue_doc import render_markdown

MARKER = re.compile(r"^<!-- catalogue: (?P<title>[^>]+?) -->$", re.MULTILINE)
# Read on GitHub from docs/ as ../NAME.md; in the site they sit beside the docs' own pages.
TOP_LEVEL = ("ARCHITECTURE.md", "BENCHMARKS.md")
LINK = re.compile(r"\]\((?P<target>[^)#\s]+)")


def with_catalogue(markdown: str) -> str:
    """`markdown` with each marker replaced by its table (a title the catalogue has not is a KeyError: the build
    fails rather than show a page without its rules)."""
    return MARKER.sub(lambda found: render_markdown(TABLES[found["title"]]).rstrip("\n"), markdown)


def on_files(files: Files, config: Any) -> Files:
    root = Path(config.config_file_path).parent
    for name in TOP_LEVEL:
        files.append(File(name, str(root), config.site_dir, config.use_directory_urls))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    here = Path(page.file.abs_src_path).parent
    root, docs = Path(config.config_file_path).parent.resolve(), Path(config.docs_dir).resolve()

    def in_site(found: re.Match[str]) -> str:
        target = found["target"]
        if "://" in target or (here / target).resolve() not in {root / name for name in TOP_LEVEL}:
            return found[0]
        moved = docs / Path(target).name  # where the site keeps it
        return f"]({Path(os.path.relpath(moved, page_dir(page, docs, here))).as_posix()}"

    return with_catalogue(LINK.sub(in_site, markdown))


def page_dir(page: Any, docs: Path, here: Path) -> Path:
    """The folder the page's links are read from in the site: its own under docs/, the docs' for a top-level page."""
    return here if here.is_relative_to(docs) else docs
