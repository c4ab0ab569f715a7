"""The pinned sets stay in step: requirements.in, requirements.lock and envs/ agree."""

import re

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
    workflow_only = {"snakemake", "snakemake-executor-plugin-slurm", "pytest", "snakefmt"}
    assert conda_pins == {name: v for name, v in direct.items() if name not in workflow_only}

