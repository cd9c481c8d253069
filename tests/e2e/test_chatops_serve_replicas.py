"""Two replicas of the chat service behind one load balancer share a PostgreSQL journal: a request
replayed to the other replica is still refused (the replay store is in the database, not in a
process), a production request asked on one is approved on the other and runs exactly once, and
one person's rate limit counts their commands on both."""

from __future__ import annotations

import json
import time

from aep_ops.testing.slack_api import SlackApi, send, sign, slash_body
from tests.support.chat_service import SECRET, TEAM, chat_service


def test_replicas_share_replays_approvals_and_rate_limits(tmp_path, pg_cluster):
    api = SlackApi()
    shared = {"extra_top": "journal: {dsn: 'env:CHAT_JOURNAL_DSN'}",
              "extra_env": {"CHAT_JOURNAL_DSN": pg_cluster.dsn}, "rate_limit": 3}
    try:
        with chat_service(tmp_path / "a", api, **shared) as a, chat_service(tmp_path / "b", api, **shared) as b:
            body = slash_body("chatcheck.look --env dev", team=TEAM, user="UVIEW")
            now = str(int(time.time()))
            signature = sign(SECRET, body, now)
            assert send(a.url, body, secret=None, timestamp=now, signature=signature)[0] == 200
            assert send(b.url, body, secret=None, timestamp=now, signature=signature) == (409, "replayed request")

            assert a.command("demo.greet --env prod --name Rep", user="UOPER1")[0] == 200
            root = api.wait_for(lambda s: s.root("<@UOPER1> asked: `/ops demo.greet --env prod --name Rep`"), 60)
            run_id = api.wait_for(lambda s: next((m.split("run ")[1].split()[0] for m in s.thread(root)
                                                  if "waits for a second person" in m), None), 60)
            assert b.command(f"approve {run_id}", user="UOPER2")[0] == 200
            assert a.command(f"approve {run_id}", user="UADMIN")[0] == 200
            api.wait_for(lambda s: any(m.startswith("*demo.greet*: done (exit 0)") for m in s.thread(root)), 90)
            assert api.wait_for(lambda s: next((w for w in s.whispers_to("UADMIN") if "already" in w), None), 60) \
                .startswith(f"run {run_id} is already ")
            assert len([m for m in api.thread(root) if m.startswith("*demo.greet*:")]) == 1
            assert pg_cluster.sql(f"select status, attempts from aep_ops.runs where id = '{run_id}'") == \
                [("succeeded", 1)]

            answers = [(a if i % 2 else b).command("chatcheck.look --env dev", user="URATE")[1] for i in range(4)]
            texts = [json.loads(x)["text"] for x in answers]
            assert [t.startswith("on it") for t in texts] == [True, True, True, False], texts
    finally:
        api.close()
