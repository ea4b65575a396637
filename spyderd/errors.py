"""One root error type with a subclass per domain, so user mistakes never become tracebacks."""

from __future__ import annotations


class SpyderError(Exception):
    """Root of every error spyderd reports to a user."""


class ConfigError(SpyderError):
    """A configuration file or command-line value is wrong."""


class StoreError(SpyderError):
    """The state directory or LMDB store cannot be used."""


class AlreadyRunningError(SpyderError):
    """Another spyderd holds the state directory's lock."""


class CaptureError(SpyderError):
    """Probes could not be compiled or attached."""


class AccessError(SpyderError):
    """The user may not read spyderd's data or talk to the daemon (not root, not `spyder`)."""


class NotRunningError(SpyderError):
    """The operation needs the running daemon, and there is none."""


class RuleError(SpyderError):
    """A rule file is wrong; carries every diagnostic found, not only the first."""

    def __init__(self, diagnostics: list) -> None:
        self.diagnostics = list(diagnostics)
        super().__init__("\n".join(str(d) for d in self.diagnostics))
