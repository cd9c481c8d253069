"""The base layer: what every other layer may import and that imports none of them (errors,
logging and the audit log, redaction, secrets, numbers, time and text formats, processes, ports,
atomic files). Not a runbook area: no ``runbooks`` module here."""
