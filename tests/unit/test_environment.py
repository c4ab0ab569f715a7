"""The pinned sets stay in step: requirements.in, requirements.lock and envs/ agree."""

import re
import tomllib

import yaml

from tests.conftest import REPO


def pins(lines):
    result = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        if match:
            result[match.group(1).lower().replace("_", "-")] = match.group(2)
    return result


def test_lock_contains_every_direct_pin():
    direct = pins((REPO / "requirements.in").read_text().splitlines())
    locked = pins((REPO / "requirements.lock").read_text().splitlines())
    assert direct and all(locked.get(name) == version for name, version in direct.items()), {
        name: (version, locked.get(name)) for name, version in direct.items() if locked.get(name) != version
    }


def test_conda_env_matches_requirements():
    direct = pins((REPO / "requirements.in").read_text().splitlines())
    env = yaml.safe_load((REPO / "envs" / "arena-distill.yaml").read_text())
    pip_section = next(item["pip"] for item in env["dependencies"] if isinstance(item, dict))
    conda_pins = pins(pip_section)
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    workflow_only = {*extras["workflow"], *extras["dev"]}  # the driver's and the developer's, not a rule's
    assert conda_pins == {name: v for name, v in direct.items() if name not in workflow_only}


def test_the_cuda_lock_pins_pypis_cuda_torch_of_the_lock():
    """`===` admits only the build without a local version: a `+cpu` wheel cannot satisfy it."""
    from packaging.specifiers import SpecifierSet

    cuda = (REPO / "requirements-cuda.lock").read_text()
    locked = pins((REPO / "requirements.lock").read_text().splitlines())
    torch_line = next(line for line in cuda.splitlines() if line.startswith("torch"))
    assert torch_line == f"torch==={locked['torch']}"
    assert not SpecifierSet(torch_line[len("torch") :]).contains(f"{locked['torch']}+cpu")
    runtime = pins(line for line in cuda.splitlines() if line != torch_line)
    assert {"nvidia-nccl-cu13", "nvidia-cudnn-cu13", "triton"} <= runtime.keys() and not runtime.keys() & locked.keys()


def test_setup_refuses_a_cpu_torch_where_cuda_was_asked(monkeypatch):
    import torch

    from arena_distill.gpu.cuda_report import report

    assert report("cpu")[1]
    monkeypatch.setattr(torch.version, "cuda", None)
    line, ok = report("cu130")
    assert not ok and "CPU wheel" in line
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    line, ok = report("cu130")
    assert not ok and "driver" in line
