"""Project exceptions. Every message names the bad value and, where there is a finite set, the
valid choices. The CLI prints `Mu2NetError`s as one line and exits non-zero."""


class Mu2NetError(Exception):
    """Base of every error the project raises on purpose."""


class ConfigError(Mu2NetError, ValueError):
    """A config name, field or value is invalid."""


class SchemaError(Mu2NetError, ValueError):
    """A stored or passed document does not match the schema; the message names the field."""


class StoreError(Mu2NetError):
    """The model store cannot do what was asked (missing version, blob, bad URI ...)."""


class ConflictError(StoreError):
    """A compare-and-swap lost a race (another writer moved the object first)."""


class IntegrityError(StoreError):
    """Stored bytes do not match their content hash (a tampered or truncated blob)."""


class TaskError(Mu2NetError, ValueError):
    """A task source is invalid, missing or unreadable."""


class DeployError(Mu2NetError):
    """A Kubeflow Pipelines endpoint, schedule or package cannot be used (unreachable host,
    failed authentication, invalid cron expression, missing compiled pipeline)."""


class RunError(Mu2NetError):
    """A pipeline run (local or on a cluster) failed; the message names the failing step's
    error and where its log is."""
