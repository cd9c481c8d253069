"""The chat service as the tests use it: ``aep-ops chatops.serve`` started as a real process
(secrets from an --env-file, listening on a port the kernel picks, announced on stdout), its
replies going to a local Slack Web API (aep_ops/testing/slack_api.py), with the test runbooks
of tests/support/chat_runbooks.py loaded as a plugin. Requests are signed as Slack signs them."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from aep_ops.testing.slack_api import SlackApi, button_body, send, slash_body
from tests.conftest import REPO
from tests.support.secret_scan import BY_KIND

TEAM = "T0AEP"
SECRET = "8f742231b10e8888abcd99yyyzzz85a5-signing"
TOKEN = "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy"
CANARY = BY_KIND["env"].value
ROLES = {"viewer": ["UVIEW"], "operator": ["UOPER1", "UOPER2"], "admin": ["UADMIN"]}


@dataclass
class ChatService:
    url: str
    proc: subprocess.Popen
    state_dir: Path
    log: Path
    env: dict  # the service's environment: a CLI run with it shares its configuration and journal

    def aep_ops(self, *words: str) -> list[str]:
        return [str(Path(sys.executable).parent / "aep-ops"), *words]

    def command(self, text: str, *, user: str, team: str = TEAM, channel: str = "C0OPS") -> tuple[int, str]:
        return send(self.url, slash_body(text, team=team, user=user, channel=channel), secret=SECRET)

    def click(self, action_id: str, value: str, *, user: str, team: str = TEAM) -> tuple[int, str]:
        return send(self.url, button_body(action_id, value, team=team, user=user), secret=SECRET)


def roles_yaml(roles: dict[str, list[str]], team: str = TEAM) -> str:
    return "{" + ", ".join(f"{role}: [{', '.join(m if '/' in m else f'{team}/{m}' for m in members)}]"
                           for role, members in roles.items()) + "}"


@contextmanager
def chat_service(tmp: Path, api: SlackApi, *, rate_limit: int = 600, roles: dict | None = None,
                 extra_top: str = "", extra_env: dict[str, str] | None = None,
                 envs: tuple[str, ...] = ("dev", "prod")) -> Iterator[ChatService]:
    tmp.mkdir(parents=True, exist_ok=True)
    state = tmp / "state"
    roles_text = roles_yaml(roles or ROLES)
    conf = tmp / "aep-ops.yaml"
    conf.write_text(f"""plugins: [tests.support.chat_runbooks]
runbook_dirs: [{REPO}/tests/support/runbooks]
chatops:
  signing_secret: env:CHAT_TEST_SIGNING_SECRET
  bot_token: env:CHAT_TEST_BOT_TOKEN
  api_url: {api.url}
  listen: 127.0.0.1:0
  rate_limit_per_minute: {rate_limit}
{extra_top}
environments:
""" + "".join(f"""  {env}:
    database: {{password: "env:CHAT_CANARY"}}
    chatops: {{roles: {roles_text}}}
""" for env in envs))
    env_file = tmp / "chatops.env"
    env_file.write_text(f"CHAT_TEST_SIGNING_SECRET={SECRET}\nexport CHAT_TEST_BOT_TOKEN='{TOKEN}'\n")
    env_file.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AEP_OPS_", "CHAT_TEST_"))}
    env.update({"AEP_OPS_STATE_DIR": str(state), "AEP_OPS_CONFIG": str(conf), "AEP_OPS_NO_SYSTEM_CONFIG": "1",
                "PYTHONPATH": str(REPO), "CHAT_CANARY": CANARY, **(extra_env or {})})
    log = tmp / "chatops.stderr"
    with open(log, "w") as err:
        proc = subprocess.Popen([str(Path(sys.executable).parent / "aep-ops"), "chatops.serve", "--env-file",
                                 str(env_file)], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        url = _announced_url(proc, log)
        yield ChatService(url=url, proc=proc, state_dir=state, log=log, env=env)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _announced_url(proc: subprocess.Popen, log: Path, timeout: float = 60) -> str:
    lines: queue.Queue = queue.Queue()

    def read() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.put(line)
        lines.put("")  # the process closed its stdout: it ended

    threading.Thread(target=read, daemon=True).start()
    try:
        line = lines.get(timeout=timeout)
    except queue.Empty:
        raise AssertionError(f"chatops.serve announced nothing in {timeout:g} s: {log.read_text()[-2000:]}") from None
    if "listening on " not in line:
        proc.wait(timeout=10)
        raise AssertionError(f"chatops.serve did not start: {line!r} {log.read_text()[-2000:]}")
    return line.split("listening on ", 1)[1].split()[0]
