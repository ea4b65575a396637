"""pySigma finds backends in the `sigma.backends` namespace: this makes spyderd's one of them,
so `sigma convert -t spyderd RULES` works wherever spyderd and sigma-cli are installed."""

from spyderd.sigma.backend import SpyderdBackend

backends = {"spyderd": SpyderdBackend}

__all__ = ["SpyderdBackend", "backends"]
