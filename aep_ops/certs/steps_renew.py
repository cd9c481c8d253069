"""The renewal steps of ``certs.renew``: is anything due, then issue and store what is.

Safe from a timer twice a day: nothing is asked of the CA until a certificate is due (its
renewal window, else two thirds of its lifetime), and off a terminal the first issuance
waits a random while (``certs.random_delay``) so a fleet of timers does not hit the CA at once.
``--dry-run`` issues from the staging directory and stores nothing (as certbot's does)."""

from __future__ import annotations

import random
import sys
import time
from datetime import datetime, timezone

from aep_ops.engine.step import Plan, Step
from aep_ops.base.errors import VerificationFailed


def _due(ctx) -> list[dict]:
    from aep_ops.certs.renewal import decide

    now = datetime.now(timezone.utc)
    return [decide(ctx.settings, cert, now=now, force=ctx.params["force"]) for cert in ctx.params["certificates"]]


def _describe(rows: list[dict]) -> str:
    return "; ".join(f"{r['name']}: {'due' if r['due'] else 'not due'}, {r['reason']}" for r in rows)


class RenewalDue(Step):
    id = "renewal_due"
    title = "Decide which certificates are due"

    def check(self, ctx):
        rows = _due(ctx)
        ctx.summary["renewal"] = "; ".join(f"{r['name']}: {'due' if r['due'] else 'next at ' + r['renew_at'][:16]}"
                                           f" ({r['reason']})" for r in rows)
        if not rows:
            return Plan.unchanged(f"no certificates configured for {ctx.env_name}", certificates=[])
        return Plan.unchanged(_describe(rows), certificates=rows)


class EnsureIssued(Step):
    id = "ensure_issued"
    title = "Issue the due certificates through ACME and store them"
    requires_approval = True
    trial = True  # --dry-run orders from the staging CA: a failed order fails the dry run

    def check(self, ctx):
        rows = [r for r in _due(ctx) if r["due"]]  # again: a resumed run may find them renewed
        if not rows:
            return Plan.unchanged("nothing is due")
        if ctx.dry_run:
            return self._staging_trial(ctx, rows)
        return Plan.change("renew " + ", ".join(f"{r['name']} ({r['reason']})" for r in rows),
                           names=[r["name"] for r in rows])

    def apply(self, ctx, plan):
        from aep_ops.certs.renewal import acme_settings, issue_and_store

        acme = acme_settings(ctx.settings, staging=False)
        _random_delay(ctx)
        issued = []
        for cert in ctx.params["certificates"]:
            if cert["name"] in plan.details["names"]:
                ctx.progress(f"{cert['name']}: ordering from {acme['directory']}")
                shown = issue_and_store(ctx.settings, cert, acme, now=datetime.now(timezone.utc), store_it=True,
                                        say=ctx.progress)
                ctx.note(f"{cert['name']}: version {shown['version']}, serial {shown['serial']}")
                issued.append(shown)
        ctx.summary["issued"] = "; ".join(f"{i['name']}: version {i['version']}, serial {i['serial']}, not after"
                                          f" {i['not_after'][:16]}" for i in issued)
        return {"issued": issued}

    def verify(self, ctx, outputs):
        from aep_ops.certs import store
        from aep_ops.certs.keys import key_matches_cert

        for shown in outputs["issued"]:
            version = store.current(ctx.settings, shown["name"])
            if version is None or version.serial != shown["serial"] or \
                    not key_matches_cert(version.key_pem, version.cert_pem):
                raise VerificationFailed(f"{shown['name']}: the stored current version is not the certificate just"
                                         " issued, or its key does not match it")

    def _staging_trial(self, ctx, rows: list[dict]) -> Plan:
        """A dry run orders each due certificate from the staging CA and keeps nothing."""
        from aep_ops.certs.renewal import acme_settings, issue_and_store

        acme = acme_settings(ctx.settings, staging=True)
        trials = []
        for cert in ctx.params["certificates"]:
            if any(r["name"] == cert["name"] for r in rows):
                shown = issue_and_store(ctx.settings, cert, acme, now=datetime.now(timezone.utc), store_it=False,
                                        say=ctx.progress)
                trials.append(f"{cert['name']} (staging issued serial {shown['serial']}, not stored)")
        return Plan.change("renew " + ", ".join(trials), names=[r["name"] for r in rows])


def _random_delay(ctx) -> None:
    """Off a terminal only (a timer, cron, chat), and only now that something is due."""
    from aep_ops.certs.settings import certs_settings

    limit = int(certs_settings(ctx.settings)["random_delay"])
    if sys.stdin.isatty() or limit <= 0:
        return
    wait = random.uniform(0, limit)
    ctx.progress(f"waiting {wait:.0f} s before ordering (a random delay off a terminal; certs.random_delay"
                 f" is {limit} s)")
    time.sleep(wait)
