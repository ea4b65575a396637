"""Sigma rules to spyderd rules, through pySigma.

`pipeline` maps Sigma's Linux log sources and taxonomy fields onto spyderd's event kinds and
fields, `backend` writes conditions in spyderd's rule language (a pySigma backend, also
found by pySigma's plugin discovery as `spyderd`: see sigma/backends/spyderd in the source
tree), `rules` carries a rule's metadata over, `importer` drives `spyderctl rules
import-sigma` with a per-rule report of what could not be converted and why.

pySigma is an optional dependency: only these modules import it, and only `spyderctl rules
import-sigma` imports them.
"""
