"""Extra runbook modules and Markdown directories named in the configuration (``plugins``,
``runbook_dirs``). Read without validating the whole configuration, so that listing tasks
stays fast and works even when the configuration is broken (config.show reports that)."""

from __future__ import annotations

import os


def _raw() -> dict:
    from aep_ops import config

    merged: dict = {"plugins": [], "runbook_dirs": []}
    try:
        for path in config.config_files():
            if not path.is_file() or path.stat().st_size > config.MAX_CONFIG_BYTES:
                continue  # a file too big is reported by the task that loads settings
            text = path.read_bytes().decode("utf-8", "replace")
            if "plugins" in text or "runbook_dirs" in text:  # most files name neither: skip the YAML parser
                data = config.read_yaml_file(path)  # bounded: no alias bomb even here
                if not isinstance(data, dict):
                    continue
                for key in merged:
                    merged[key] = data.get(key, merged[key]) or merged[key]
    except Exception:  # a broken file is reported by the task that loads settings
        pass
    for key in merged:
        env = os.environ.get(f"AEP_OPS_{key.upper()}")
        if env:
            merged[key] = [item for item in env.split(",") if item]
    return merged


def plugin_modules() -> list[str]:
    return list(_raw()["plugins"])


def runbook_dirs() -> list[str]:
    return list(_raw()["runbook_dirs"])
