"""The command line's overrides, checked before Hydra composes them: Hydra would report a typo'd key in several
lines and exit 1 (`detph=30`), or add it to the config without a word (`+detph=30`)."""

from collections.abc import Mapping
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser

from gradlab.config import schema_keys, unknown_key
from gradlab.validation import one_of


def config_groups(conf_dir: Path) -> dict[str, list[str]]:
    """conf/'s config groups and their options: {"dataset": ["digits", ...], "experiment": [...], ...}."""
    return {group.name: sorted(option.stem for option in group.glob("*.yaml"))
            for group in sorted(Path(conf_dir).iterdir()) if group.is_dir() and group.name != "hydra"}


def check_overrides(overrides: list[str], groups: Mapping[str, list[str]]) -> None:
    """Command-line overrides, before Hydra composes them: every key known to the schema (whether written
    `detph=30`, `+detph=30` or `++detph=30`) and every config group's option one of its files."""
    for override in OverridesParser.create().parse_overrides(overrides):
        key = override.key_or_group
        if key == "hydra" or key.startswith(("hydra.", "hydra/")):
            continue  # Hydra's own keys: Hydra checks them
        if key in groups:
            values = list(override.sweep_string_iterator()) if override.is_discrete_sweep() else None
            for value in values or ([override.value()] if isinstance(override.value(), str) else []):
                one_of(key, value, groups[key])
        elif key not in schema_keys():
            raise unknown_key(key, override.input_line)
