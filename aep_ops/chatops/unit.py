"""The systemd service that runs ``chatops.serve``: always on, restarted on failure, hardened
like the timers' services (the runs it starts need what they need), checked by systemd-analyze
before anyone installs it."""

from __future__ import annotations

from typing import Any

from aep_ops.timers.units import (ALWAYS_WRITABLE, EXPOSURE_BAR, HARDENING, STOP_SECONDS, env_value, exec_word,
                                  unit_path, unit_word)

UNIT_NAME = "aep-ops-chatops.service"
DEFAULT_ENV_FILE = "/etc/aep-ops/chatops.env"


def render_unit(settings: Any, *, env_file: str = DEFAULT_ENV_FILE, user: str = "root") -> str:
    from aep_ops.engine.markdown import RUNBOOKS_DIR
    from aep_ops.timers.render import place

    where = place(settings)
    environment = [f"AEP_OPS_STATE_DIR={where['state_dir']}"]
    if where["config_file"]:
        environment.append(f"AEP_OPS_CONFIG={where['config_file']}")
    words = [where["command"], "chatops.serve", "--env-file", unit_path("--env-file", env_file)]
    return ("# Written by aep-ops (inv chatops.unit): install it as /etc/systemd/system/" + UNIT_NAME + "\n"
            "[Unit]\n"
            "Description=aep-ops chat front door (Slack slash command)\n"
            f"Documentation=file://{RUNBOOKS_DIR.parent}/README.md\n"
            "After=network-online.target\nWants=network-online.target\n\n"
            "[Service]\n"
            "Type=simple\n"
            f"User={unit_word('--user', user)}\n"
            f"WorkingDirectory={unit_path('state_dir', where['state_dir'])}\n"
            + "".join(f'Environment="{env_value(e)}"\n' for e in environment)
            + f"ExecStart={' '.join(exec_word(w) for w in words)}\n"
            "Restart=on-failure\nRestartSec=5\n"
            f"TimeoutStopSec={STOP_SECONDS}\n"
            "KillMode=mixed\n"
            "StandardInput=null\n"
            "SyslogIdentifier=aep-ops-chatops\n"
            + "\n".join(HARDENING) + "\n"
            + "ReadWritePaths=" + " ".join([unit_path("state_dir", where["state_dir"]), *ALWAYS_WRITABLE]) + "\n\n"
            "[Install]\nWantedBy=multi-user.target\n")


def checked_unit(settings: Any, **kwargs: Any) -> tuple[str, float]:
    """The unit and its exposure score; raises VerificationFailed when systemd refuses it."""
    from aep_ops.timers.analyze import verify

    text = render_unit(settings, **kwargs)
    return text, verify({UNIT_NAME: text}, EXPOSURE_BAR)[UNIT_NAME]
