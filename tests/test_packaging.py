"""pyproject.toml and environment.yml name the same packages with the same version bounds."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
# conda package name -> PyPI distribution name, where they differ
CONDA_TO_PYPI = {"pytorch": "torch"}
NOT_PACKAGES = {"python", "pip"}


def _split(requirement: str) -> tuple[str, str]:
    match = re.match(r"\s*([A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*(.*)$", requirement)
    assert match, requirement
    name = match.group(1).lower().replace("_", "-")
    spec = match.group(3).replace(" ", "")
    return name, spec


def pip_requirements() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"]) + list(project["optional-dependencies"]["test"])
    return dict(_split(r) for r in reqs)


def conda_requirements() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    found: dict[str, str] = {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            for entry in dep.get("pip", []):
                if entry.startswith("-"):  # the project itself (-e .)
                    continue
                name, spec = _split(entry)
                found[name] = spec
            continue
        name, spec = _split(dep)
        if name in NOT_PACKAGES:
            continue
        found[CONDA_TO_PYPI.get(name, name)] = spec
    return found


def test_same_packages_and_versions():
    pip, conda = pip_requirements(), conda_requirements()
    assert sorted(pip) == sorted(conda), (
        f"only in pyproject: {sorted(set(pip) - set(conda))}; only in environment.yml: {sorted(set(conda) - set(pip))}"
    )
    for name, spec in pip.items():
        assert conda[name] == spec, f"{name}: pyproject says {spec!r}, environment.yml says {conda[name]!r}"


def test_pins_asked_for():
    pip = pip_requirements()
    assert pip["torch"] == "==2.14.1"
    assert pip["torchvision"] == "==0.29.1"
    assert pip["snakemake"].startswith(">=9.27")
    assert pip["transformers"] == ">=5,<6"


def test_python_pinned_in_conda():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert "python=3.11" in env["dependencies"]


def test_console_script_declared():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["momok"] == "momok.cli:main"
