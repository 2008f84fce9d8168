"""`pip install "edge-caption[tensorrt]"` picks the cuda-python that matches the machine's CUDA: the
extra's environment markers evaluated as pip does, for a Jetson on JetPack 6 and for a desktop."""
from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[1]
JETPACK_6 = {"platform_machine": "aarch64", "python_version": "3.10", "python_full_version": "3.10.12",
             "sys_platform": "linux", "platform_system": "Linux", "extra": "tensorrt"}
JETPACK_7 = {**JETPACK_6, "python_version": "3.12", "python_full_version": "3.12.3"}
DESKTOP = {**JETPACK_6, "platform_machine": "x86_64", "python_version": "3.12", "python_full_version": "3.12.3"}


def cuda_python(environment: dict[str, str]) -> list[SpecifierSet]:
    """The cuda-python specifiers pip would apply on `environment`."""
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["tensorrt"]
    found = [Requirement(line) for line in extra]
    return [r.specifier for r in found
            if r.name == "cuda-python" and (r.marker is None or r.marker.evaluate(environment))]


def test_jetpack_6_gets_cuda_python_12_6():
    (spec,) = cuda_python(JETPACK_6)
    assert spec == SpecifierSet("==12.6.*")
    assert not spec.contains("13.0.0") and spec.contains("12.6.2")


@pytest.mark.parametrize("environment", [DESKTOP, JETPACK_7], ids=["desktop", "jetpack-7"])
def test_elsewhere_a_floor_leaves_the_major_to_the_driver(environment):
    (spec,) = cuda_python(environment)
    assert spec == SpecifierSet(">=12.6")
    assert spec.contains("13.0.0") and spec.contains("12.9.0")
