"""The workflow's effective config and a profile's per-rule resources, read as Snakemake reads them.

Commands that reason about a run before it starts (the capacity plan) must see the same
config the jobs will see: the embedded `config/config.yaml`, each `--configfile` merged on
top in order (nested mappings merged, other values replaced), a null removing an inherited
teacher or extra set, then validated with the schema, which fills its defaults.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from jsonschema import ValidationError
from snakemake.exceptions import WorkflowError
from snakemake.utils import update_config, validate

from arena_distill.errors import ConfigError
from arena_distill.workflow.config_checks import data_files

WORKFLOW_DIR = Path(__file__).resolve().parents[3]
"""The repository root: the Snakefile's directory, where relative config paths point."""

REMOVABLE = (("teachers",), ("data", "extra"))
"""Mappings whose entries a config file removes with null (a preset dropping a teacher or an extra set)."""

FIRST_ATTEMPT = re.compile(r"^\s*(\d+)\s*\*\s*attempt\s*$")

WORKFLOW_PARTS = (
    "Snakefile",
    "rules",
    "scripts",
    "report",
    "config",
    "src",
    "profiles",
    "envs",
    "data/sample",
    "pyproject.toml",
    "README.md",
)
"""What a private copy of the workflow needs (no results, no caches)."""

PRESET = WORKFLOW_DIR / "config" / "presets" / "blackpearl.yaml"


def effective_config(configfiles: Sequence[str | Path] = ()) -> dict[str, Any]:
    """`config/config.yaml` with `configfiles` overlaid in order, validated, defaults filled."""
    config = yaml.safe_load((WORKFLOW_DIR / "config" / "config.yaml").read_text())
    for path in configfiles:
        update_config(config, yaml.safe_load(Path(path).read_text()) or {})
    return validated(config, WORKFLOW_DIR / "config" / "schema.yaml")


def validated(config: dict[str, Any], schema: str | Path) -> dict[str, Any]:
    """`config` (already overlaid) with the entries a null removes dropped, checked against the
    schema, defaults filled in place. A violation is a ConfigError naming the key in one line
    (the library's own message also prints the whole schema). Snakemake's run and the commands
    that reason about a run before it starts both come through here."""
    for keys in REMOVABLE:
        mapping = config
        for key in keys:
            mapping = mapping.get(key) or {}
        for name in [name for name, value in mapping.items() if value is None]:
            del mapping[name]
    try:
        validate(config, str(schema))
    except WorkflowError as error:
        cause = error.__context__
        if not isinstance(cause, ValidationError):
            raise
        key = ".".join(map(str, cause.absolute_path)) or "(top level)"
        raise ConfigError(f"invalid config: {cause.message}", key=key) from None
    return config


def copy_workflow(dest: Path) -> Path:
    """A private copy of the workflow (results and caches stay out of the repository)."""
    for part in WORKFLOW_PARTS:
        source, target = WORKFLOW_DIR / part, dest / part
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return dest


def with_placeholder_data(workdir: Path, configfiles: Sequence[str | Path]) -> list[str]:
    """Empty files in a workflow copy for every relative data path the config names and the
    copy lacks (a dry run reads none of them); returns those paths. An absolute path is left
    alone: the dry run then names its key."""
    made = []
    for path in data_files(effective_config(configfiles)).values():
        target = workdir / path
        if not Path(path).is_absolute() and not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch()
            made.append(path)
    return made


def rule_resources(profile: str | Path, rule: str) -> dict[str, Any]:
    """The resources a job of `rule` gets on its first attempt: the profile's (a directory or its
    config.yaml) `default-resources` under its `set-resources` for the rule."""
    path = Path(profile)
    settings = yaml.safe_load((path / "config.yaml" if path.is_dir() else path).read_text()) or {}
    resources = {**(settings.get("default-resources") or {}), **(settings.get("set-resources") or {}).get(rule, {})}
    return {key: first_attempt(value) for key, value in resources.items()}


def first_attempt(value: Any) -> Any:
    """A resource value on a job's first attempt: `N * attempt` is N, anything else stays as written."""
    match = FIRST_ATTEMPT.match(value) if isinstance(value, str) else None
    return int(match.group(1)) if match else value
