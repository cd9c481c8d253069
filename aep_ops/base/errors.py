"""One exception hierarchy for aep-ops.

Messages are written for an on-call engineer: what went wrong, where, and what to do
next. Exit codes are mapped only in ``aep_ops.tasks`` (the front doors), never here.
Wrap third-party errors (botocore ClientError, psycopg.Error, paramiko/SSH errors) at
the boundary with ``raise ... from exc``.
"""


class AepError(Exception):
    """Base of every error aep-ops raises on purpose."""


class UsageError(AepError):
    """Bad input from the user: a flag, an argument, a target time. Nothing was changed."""


def refuse_blank(flag: str, value: object, what: str) -> None:
    """A flag given explicitly with an empty or blank value is a mistake (an unset shell
    variable), never a request for the default or for everything: UsageError, exit 2."""
    if value is not None and not isinstance(value, bool) and not str(value).strip():
        raise UsageError(f"{flag} is empty: {what}")


class ConfigError(UsageError):
    """The configuration is invalid: unknown key, wrong type, missing value, bad secret reference."""


class SecretError(AepError):
    """A secret reference could not be resolved (the message never contains the value)."""


class LockedError(AepError):
    """Another run holds the lock for this runbook and environment."""


class ApprovalRequired(AepError):
    """A step needs explicit approval (``--yes`` or a chat approval) before it changes production."""


class StepFailed(AepError):
    """A step's check, apply or verify failed; the run stopped there and can be resumed."""


class NotResumable(StepFailed):
    """A one-shot step was interrupted mid-apply and cannot tell what it did: a person checks,
    then starts a new run (resuming would only refuse again)."""


class VerificationFailed(AepError):
    """The work was done but the result is not as intended (a failed check of the outcome).

    ``details`` (optional) is journaled as the step's outputs, e.g. the rows of a report.
    """

    def __init__(self, message: str, details: dict | None = None) -> None:
        super().__init__(message)
        self.details = details or {}


class ToolMissing(AepError):
    """A required external program (pg_ctl, pgbackrest, sshd, ...) is not installed."""


class ExecutionError(AepError):
    """A command could not be run on a target (not: it ran and exited non-zero)."""


class CommandTimeout(ExecutionError):
    """A command exceeded its deadline and was stopped."""


class HostUnreachable(ExecutionError):
    """A host could not be reached or did not answer before the connect deadline."""


class HostKeyError(ExecutionError):
    """A host's SSH key is unknown or has changed; the connection was refused."""


class StateUnwritable(AepError):
    """aep-ops's own state (the run journal, its log files) cannot be written: a full disk, a
    read-only file system or file. The message names the path and what to do about it."""
