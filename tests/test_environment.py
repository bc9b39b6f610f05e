"""pyproject.toml (pip) and environment.yml (conda) ask for the same packages and pins."""

import re
import tomllib

import yaml

from conftest import ROOT

# pip name -> conda-forge name, where they differ
CONDA_NAME = {"torch": "pytorch", "dlib-bin": "dlib"}


def _split(requirement: str) -> tuple[str, str]:
    name, spec = re.match(r"^([A-Za-z0-9_.\-]+)\s*(.*)$", requirement.strip()).groups()
    return name.lower(), spec.replace(" ", "")


def _pip_requirements() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = project["dependencies"] + project["optional-dependencies"]["test"]
    return dict(_split(r) for r in reqs)


def _conda_requirements() -> tuple[dict[str, str], dict[str, str]]:
    deps = yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
    conda = dict(_split(d.replace("=", "==", 1) if re.match(r"^[^<>=]+=[^=]", d) else d)
                 for d in deps if isinstance(d, str))
    pip = dict(_split(r) for d in deps if isinstance(d, dict) for r in d.get("pip", []))
    return conda, pip


def test_every_pip_requirement_is_in_environment_yml_with_the_same_pin():
    conda, pip = _conda_requirements()
    for name, spec in _pip_requirements().items():
        if name in pip:
            assert pip[name] == spec, f"{name}: pyproject {spec} vs environment.yml pip {pip[name]}"
        else:
            conda_name = CONDA_NAME.get(name, name)
            assert conda_name in conda, f"{name} missing from environment.yml"
            assert conda[conda_name] == spec, f"{name}: pyproject {spec} vs conda {conda[conda_name]}"


def test_environment_yml_asks_for_nothing_extra():
    conda, pip = _conda_requirements()
    wanted = {CONDA_NAME.get(n, n) for n in _pip_requirements()} | set(_pip_requirements())
    extra = (set(conda) | set(pip)) - wanted - {"python", "pip"}
    assert not extra, f"environment.yml has packages pyproject.toml lacks: {extra}"


def _exact_pins() -> dict[str, str]:
    return {n: spec[2:] for n, spec in _pip_requirements().items() if spec.startswith("==")}


def test_torch_pins_agree_between_the_two_parsed_files():
    # both sides parsed from their files: pyproject's ``==X`` and environment.yml's ``=X``
    conda, _ = _conda_requirements()
    pins = _exact_pins()
    assert {"torch", "torchvision"} <= set(pins), "pyproject.toml must pin torch and torchvision"
    for name in ("torch", "torchvision"):
        assert conda[CONDA_NAME.get(name, name)] == "==" + pins[name], name


def test_exact_pins_are_the_versions_installed_here():
    # the environment the tests run in is the one the files describe (local builds like
    # 2.14.1+cpu count as 2.14.1)
    from importlib.metadata import PackageNotFoundError, version

    for name, pinned in _exact_pins().items():
        try:
            installed = version(name).split("+")[0]
        except PackageNotFoundError:
            continue  # e.g. a conda build under another distribution name
        assert installed == pinned, f"{name}: pinned {pinned}, installed {installed}"


def test_environment_python_satisfies_requires_python():
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    minimum = tuple(int(x) for x in re.match(r">=\s*(\d+)\.(\d+)", requires).groups())
    deps = yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
    python = next(d for d in deps if isinstance(d, str) and d.startswith("python="))
    assert tuple(int(x) for x in python.split("=")[1].split(".")[:2]) >= minimum
