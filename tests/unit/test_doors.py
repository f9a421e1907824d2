"""The doors between the rooms open one way: import-linter's contracts (pyproject.toml) hold on the package as it is
installed, and every package of the source is installed."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())
SETUPTOOLS: dict[str, Any] = PYPROJECT["tool"]["setuptools"]


def source_of(package: str) -> Path:
    """Where a package's modules are in the source, by setuptools' `package-dir` (the longest prefix mapped)."""
    dirs: dict[str, str] = SETUPTOOLS["package-dir"]
    mapped = max((p for p in dirs if p in ("", package) or package.startswith(f"{p}.")), key=len)
    return ROOT / dirs[mapped] / Path(*package.removeprefix(mapped).lstrip(".").split("."))


def test_every_package_of_the_source_is_installed() -> None:
    """The wheel holds the packages `packages` lists and silently drops any other."""
    listed = {source_of(p) for p in SETUPTOOLS["packages"]}
    found = {
        module.parent
        for root in {source_of(p) for p in SETUPTOOLS["packages"] if "." not in p or p in SETUPTOOLS["package-dir"]}
        for module in root.rglob("*.py")
    }
    assert found - listed == set()


def test_every_module_of_the_write_side_is_held_to_its_door() -> None:
    """A module added to src/hajj_ledger is checked by the write side's contract only once it is named there."""
    [write_side] = [c for c in PYPROJECT["tool"]["importlinter"]["contracts"] if c["name"].startswith("The write side")]
    here = {
        f"hajj_ledger.{path.stem}"
        for path in (ROOT / "src" / "hajj_ledger").iterdir()
        if (path.suffix == ".py" and path.stem != "__init__") or (path / "__init__.py").exists()
    }
    assert here - set(write_side["source_modules"]) == set()


def test_the_doors_open_one_way(tmp_path: Path) -> None:
    """The installed package laid out as the wheel has it (only the listed packages), then checked by lint-imports
    without the editable install's finder (`-S`), which would otherwise show it the source tree's layout."""
    for package in SETUPTOOLS["packages"]:
        into = tmp_path.joinpath(*package.split("."))
        into.mkdir(parents=True)
        for module in source_of(package).glob("*.py"):
            shutil.copy(module, into)
    site_packages = sysconfig.get_paths()["purelib"]
    ran = subprocess.run(
        [sys.executable, "-S", "-c", "import sys; from importlinter.cli import lint_imports; "
         f"sys.exit(lint_imports({str(ROOT / 'pyproject.toml')!r}, no_cache=True, no_logo=True))"],
        cwd=tmp_path, env={"PYTHONPATH": f"{tmp_path}:{site_packages}"}, capture_output=True, text=True,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "0 broken" in ran.stdout
