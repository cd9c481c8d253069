"""A chat command is parsed by the CLI's own parser: the same flags give the same values, and the
same mistakes the same one-line errors (only the program name differs: ``/ops`` for ``aep-ops``)."""

from __future__ import annotations

import pytest

from aep_ops.base.errors import UsageError
from aep_ops.chatops.commands import parse, split
from aep_ops.engine.runbook import load_all


@pytest.fixture(scope="module")
def exposed():
    found = load_all()
    return {k: found[k] for k in ("demo.greet", "doctor", "pitr.discard", "incident.diagnose")}


def test_flags_parse_as_on_the_cli(exposed):
    command = parse("demo.greet --env=prod --name “Ada Lovelace” --pause 2 --dry-run", exposed, "/ops")
    assert command.verb == "run" and command.runbook.id == "demo.greet"
    assert {k: command.kwargs[k] for k in ("env", "name", "pause", "dry_run")} == \
        {"env": "prod", "name": "Ada Lovelace", "pause": "2", "dry_run": True}
    assert parse("pitr.discard copy1 --env dev", exposed, "/ops").kwargs["name"] == "copy1"
    assert split("demo.greet --name a&amp;b") == ["demo.greet", "--name", "a&b"]


@pytest.mark.parametrize("words", [["--nme", "Al"], ["--pause"], ["extra"], ["--env"]])
def test_mistakes_read_as_the_cli_reads_them(cli, exposed, words):
    done = cli("demo.greet", *words, tool="aep-ops", check_rc=2)
    with pytest.raises(UsageError) as raised:
        parse(" ".join(["demo.greet", *words]), exposed, "/ops")
    assert "error: " + str(raised.value) == done.stderr.strip().replace("aep-ops", "/ops")


@pytest.mark.parametrize("text, says", [
    ("demo.greet --yes", "--yes is the CLI's"), ("demo.greet --json", "--json is the CLI's"),
    ("approve", "usage: /ops approve RUN_ID"), ("approve a b", "usage: /ops approve RUN_ID"),
    ("deny --all", "usage: /ops deny RUN_ID"), ("x " * 70, "too many words"),
    ("incident.diagnose --env prod --bundle /etc/cron.d", "--bundle is the CLI's"),
])
def test_chat_refusals(exposed, text, says):
    with pytest.raises(UsageError, match=None) as raised:
        parse(text, exposed, "/ops")
    assert says in str(raised.value)
