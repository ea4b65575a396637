"""pySigma finds pipelines in the `sigma.pipelines` namespace: `sigma convert -p spyderd`
(the spyderd backend applies it by itself)."""

from spyderd.sigma.pipeline import spyderd_pipeline

pipelines = {"spyderd": spyderd_pipeline}

__all__ = ["pipelines", "spyderd_pipeline"]
