"""One typed config system for the whole project: dataclasses + YAML, validated on load."""

from dima_core.config.loader import (
    ConfigError,
    config_from_dict,
    config_to_dict,
    load_config,
    ranged,
    save_config,
)

__all__ = ["ConfigError", "config_from_dict", "config_to_dict", "load_config", "ranged", "save_config"]
