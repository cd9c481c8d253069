"""Configuration: the layered settings every runbook reads (``settings``), the schema each layer is
checked against (``schema``), and the names ``--set`` accepts (``keys``).

``from aep_ops import config; config.load(...)`` is the way in; the names below are that surface."""

from aep_ops.config.settings import (MAX_CONFIG_BYTES, ConfigError, Settings, config_files, load,
                                     read_yaml_file)

__all__ = ["MAX_CONFIG_BYTES", "ConfigError", "Settings", "config_files", "load", "read_yaml_file"]
