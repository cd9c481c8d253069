"""incident.diagnose's pure parts: the host probe's parser, the host rules (facts in, findings
out, each naming its threshold), the scrubbing of secret-shaped text, and the collector's
deadline (fake sources here: the real ones are in tests/integration/test_incident_diagnose_hosts.py)."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from aep_ops.incident import host_probe
from aep_ops.incident.bundle import safe_name
from aep_ops.incident.collect import collect_all
from aep_ops.incident.host_rules import host_findings, recent_lines
from aep_ops.incident.model import SourceResult, rank, Finding
from aep_ops.incident.scrub import scrub, scrub_obj
from aep_ops.incident.settings import IncidentConfig

PROBE = """@@clock
1000.5
@@loadavg
5.00 2.00 1.00 2/300 12345
@@nproc
2
@@stat1
cpu  100 0 100 800 0 0 0 0 0 0
@@stat2
cpu  190 0 100 810 0 0 0 0 0 0
@@meminfo
MemTotal:       1000000 kB
MemAvailable:     50000 kB
SwapTotal:       200000 kB
SwapFree:         20000 kB
@@df
Filesystem     1024-blocks      Used Available Capacity Mounted on
overlay          100000000  96000000   4000000      96% /
tmpfs                65536         0     65536       0% /dev
/dev/sdb1          1000000    100000    900000      10% /var/lib/postgresql
@@dfi
Filesystem      Inodes  IUsed   IFree IUse% Mounted on
overlay        6000000 600000 5400000   10% /
@@ps
    PID USER     %CPU %MEM   RSS ELAPSED COMMAND
    42 app      180.0 40.0 400000    3600 node /srv/api/server.js
@@failed-units
aep-api.service loaded failed failed AEP API
cron.service loaded failed failed Regular background program processing daemon
@@rc=0
@@oom
2026-12-07T03:01:02+0000 host kernel: Out of memory: Killed process 42 (node)
@@ports
LISTEN 0      511          0.0.0.0:22        0.0.0.0:*
LISTEN 0      511        127.0.0.1:5432      0.0.0.0:*
@@ntp
no
@@logs
@@log /var/log/aep/api.log
2026-12-07T03:00:00Z ERROR boom
@@end
"""


def _host(role="api"):
    return SimpleNamespace(name="web1", role=role)


def _cfg(**changes):
    return IncidentConfig(env_name="prod", expected_ports=(3000,), **changes)


def test_probe_output_parses_into_facts():
    facts = host_probe.parse(PROBE, sent_at=1000.0, answered_at=1000.4)
    assert facts["cpus"] == 2 and facts["load"] == [5.0, 2.0, 1.0]
    assert facts["cpu_percent"] == 90.0  # 90 busy of 100 ticks
    assert facts["memory"]["used_percent"] == 95.0 and facts["memory"]["swap_used_percent"] == 90.0
    assert [d["mount"] for d in facts["disks"]] == ["/", "/var/lib/postgresql"], "tmpfs and /dev left out"
    assert facts["top_processes"][0]["command"] == "node /srv/api/server.js"
    assert facts["failed_units"] == ["aep-api.service", "cron.service"]
    assert facts["listening_ports"] == [22, 5432] and facts["ntp_synchronized"] is False
    assert facts["clock_offset_ms"] == 100.0, "read 0.1 s after the answer came back: 100 ms ahead"
    assert facts["log_errors"] == {"/var/log/aep/api.log": ["2026-12-07T03:00:00Z ERROR boom"]}
    assert facts["complete"]


def test_missing_sections_are_unknown_not_zero():
    facts = host_probe.parse("@@clock\nnot-a-number\n@@failed-units\n", sent_at=0, answered_at=1)
    assert facts["cpus"] is None and facts["memory"] is None and facts["cpu_percent"] is None
    assert facts["failed_units"] is None, "systemctl did not answer (no @@rc=0): unknown, not 'none failed'"
    assert facts["clock_offset_ms"] is None and not facts["complete"]


def test_netstat_output_is_read_too():
    lines = ["tcp        0      0 0.0.0.0:3000            0.0.0.0:*               LISTEN",
             "tcp6       0      0 :::22                   :::*                    LISTEN"]
    assert host_probe._ports(lines) == [22, 3000]


def test_the_script_gets_user_values_as_arguments_never_inside_it():
    argv = host_probe.host_argv(deadline=7.9, since_minutes=30, pattern="-e x; rm -rf /", globs=["/var/log/a b/*.log"])
    assert argv[:7] == ["timeout", "-k", "1", "7", "sh", "-c", host_probe.SCRIPT]
    assert argv[7:] == ["aep-diagnose", "30", "-e x; rm -rf /", "/var/log/a b/*.log"]
    assert 'grep -E -e "$pattern"' in host_probe.SCRIPT


def test_host_rules_name_threshold_and_runbook():
    facts = host_probe.parse(PROBE, sent_at=1000.0, answered_at=1000.4)
    found = host_findings("host:web1", _host(), facts, _cfg(), since_epoch=0)
    api = next(f for f in found if "aep-api.service" in f.what)
    assert api.severity == "critical" and api.command == "inv service.restart --env prod --role api"
    cron = next(f for f in found if "cron.service" in f.what)
    assert cron.severity == "warning" and cron.runbook == ""
    disk = next(f for f in found if f.what.startswith("/: 96%"))
    assert disk.severity == "critical" and "incident.host.disk_percent" in disk.threshold
    assert disk.command == "inv logs.rotate --env prod"
    assert any("OOM" in f.what and f.severity == "critical" for f in found)
    assert any("port(s) 3000" in f.what for f in found), "nothing listens on the expected port"
    assert any(f.what.startswith("load 5") and "load_percent" in f.threshold for f in found)
    assert any(f.what.startswith("memory 95%") for f in found) and any(f.what.startswith("swap 90%") for f in found)
    assert any("NTPSynchronized=no" in f.what for f in found)
    assert all(f.where == "web1" and f.threshold for f in found), "every finding names where and its rule"


def test_quiet_host_has_no_findings():
    quiet = PROBE.replace("5.00 2.00", "0.10 0.20").replace("cpu  190 0 100 810", "cpu  101 0 100 899") \
        .replace("50000 kB", "900000 kB").replace("SwapFree:         20000", "SwapFree:        200000") \
        .replace("96% /\n", "40% /\n").replace("aep-api.service loaded failed failed AEP API\ncron.service loaded"
                                             " failed failed Regular background program processing daemon\n", "") \
        .replace("2026-12-07T03:01:02+0000 host kernel: Out of memory: Killed process 42 (node)\n", "") \
        .replace("no\n@@logs", "yes\n@@logs").replace("2026-12-07T03:00:00Z ERROR boom\n", "")
    facts = host_probe.parse(quiet, sent_at=1000.0, answered_at=1000.6)
    assert host_findings("host:web1", _host(), facts, IncidentConfig(env_name="prod"), since_epoch=0) == []


def test_error_lines_outside_the_window_are_left_out_unstamped_ones_kept():
    lines = ["2026-12-07T01:00:00Z ERROR old", "2026-12-07T03:00:00Z ERROR new", "ERROR no stamp"]
    since = 1796612400.0  # 2026-12-07T02:20:00Z
    assert recent_lines(lines, since) == ["2026-12-07T03:00:00Z ERROR new", "ERROR no stamp"]


@pytest.mark.parametrize("text, hidden", [
    ("login failed password=hunter2hunter2 user=app", "hunter2hunter2"),
    ('{"token": "abcdefgh12345678"}', "abcdefgh12345678"),
    ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig", "eyJhbGciOiJIUzI1NiJ9"),
    ("postgresql://app:S3cretPw@db.internal:5432/aep", "S3cretPw"),
    ("posting to https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXX", "XXXXXXXXXXXX"),
    ("key AKIAABCDEFGHIJKLMNOP used", "AKIAABCDEFGHIJKLMNOP"),
    ("ALTER ROLE app PASSWORD 'Sup3r-secret'", "Sup3r-secret"),
    ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaA\n-----END OPENSSH PRIVATE KEY-----", "b3BlbnNzaA"),
])
def test_secret_shaped_text_is_masked(text, hidden):
    masked = scrub(text)
    assert hidden not in masked and "****" in masked, masked


def test_scrub_keeps_ordinary_text_and_walks_structures():
    assert scrub("disk / is 96% full; pid 42 node") == "disk / is 96% full; pid 42 node"
    assert scrub_obj({"lines": ["password=abcdefgh1"], "n": 3}) == {"lines": ["password=****"], "n": 3}


def test_source_names_become_file_names_never_paths():
    assert safe_name("host:web-1") == "host_web-1"
    assert safe_name("../../etc/passwd") == "etc_passwd"
    assert "/" not in safe_name("a/b") and safe_name("..") == "source"


def test_rank_puts_critical_first_and_keeps_source_order():
    f = [Finding("info", "a", "1", "t"), Finding("critical", "b", "2", "t"), Finding("warning", "c", "3", "t"),
         Finding("critical", "d", "4", "t")]
    assert [x.what for x in rank(f)] == ["2", "4", "3", "1"]


class _Fake:
    """A source that answers after ``delay`` seconds, or hangs until aborted."""

    def __init__(self, name, delay=None, fail=None):
        self.name, self.delay, self.fail = name, delay, fail
        self.aborted = threading.Event()

    def collect(self, deadline_at):
        if self.fail:
            raise self.fail
        if self.delay is None:
            self.aborted.wait(30)
            raise OSError("aborted")
        time.sleep(self.delay)
        return SourceResult(self.name, data={"waited": self.delay})

    def abort(self):
        self.aborted.set()


def test_collector_returns_at_the_deadline_and_aborts_stragglers():
    hung, quick, broken = _Fake("hung"), _Fake("quick", 0.01), _Fake("broken", fail=ValueError("bad"))
    started = time.monotonic()
    results = collect_all([hung, quick, broken], deadline=0.5, parallel=3)
    assert time.monotonic() - started < 0.5 + 0.5 + 0.3, "deadline plus the abort grace, never the hang"
    assert [r.status for r in results] == ["timeout", "ok", "error"]
    assert hung.aborted.is_set() and results[0].error == "no answer within 0.5s"
    assert results[2].error == "ValueError: bad" and results[1].elapsed < 0.5
