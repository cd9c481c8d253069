"""The Slack front door: ``/ops`` commands verified, authorised, approved and then carried out by
the same ``aep-ops`` command as the CLI and the timers (one process per run, so the same parser,
lock, journal, deadlines and masking apply). This package parses, decides who may do what, asks
for approval and reports; it holds no operations logic."""
