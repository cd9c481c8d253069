"""``chatops.serve`` and ``chatops.unit``: the Slack front door (aep_ops/chatops) and the systemd
service that keeps it running."""

from __future__ import annotations

from invoke import task

from aep_ops.tasks.frontdoor import front_door, load_settings

ENV_FILE_HELP = ("read NAME=VALUE lines (systemd EnvironmentFile format, mode 600) into the environment first,"
                 " e.g. SLACK_SIGNING_SECRET and SLACK_BOT_TOKEN")


@task(help={"env_file": ENV_FILE_HELP})
def serve(c, env_file=None):
    """Serve the /ops slash command: verified requests, RBAC per environment, second-person
    approval of production changes, runs carried out by aep-ops itself (stop with SIGTERM or Ctrl-C)."""
    with front_door():
        import sys

        from aep_ops.chatops.envfile import load_env_file
        from aep_ops.chatops.server import serve as run_service

        if env_file is not None:
            load_env_file(env_file)
        settings = load_settings(None)
        run_service(settings, announce=lambda line: print(line, flush=True, file=sys.stdout))


@task(help={"env_file": "the file the service reads its secrets from (default /etc/aep-ops/chatops.env)",
            "user": "user the service runs as (default root)"})
def unit(c, env_file=None, user=None):
    """Print the systemd unit of the chat service, checked by systemd-analyze (verify and security)."""
    with front_door():
        import sys

        from aep_ops.chatops.unit import DEFAULT_ENV_FILE, UNIT_NAME, checked_unit

        settings = load_settings(None)
        text, exposure = checked_unit(settings, env_file=env_file or DEFAULT_ENV_FILE, user=user or "root")
        sys.stdout.write(text)
        print(f"{UNIT_NAME}: verified, exposure {exposure:.1f}; install it in /etc/systemd/system and"
              " `systemctl enable --now " + UNIT_NAME + "`", file=sys.stderr)
