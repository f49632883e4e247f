"""The failures a user can cause or meet; each message is shown as one line, without a traceback."""


class GradaccError(Exception):
    """Base of every expected failure: the CLI prints `gradacc: error: <message>` and exits non-zero."""


class ConfigError(GradaccError, ValueError):
    """A configuration that the protocol cannot run."""


class DataError(GradaccError, RuntimeError):
    """The data set cannot be found, fetched or read; the message says where and what to do."""


class TrackingError(GradaccError, RuntimeError):
    """The tracking store cannot be reached or used."""


class Diverged(GradaccError, RuntimeError):
    """The training loss became NaN or infinite; the run stops early and ends FAILED."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (a user, `mlflow run` or torchrun stopping the job), handled like Ctrl-C: the run ends KILLED with
    what it measured."""
