"""Recipes that add a ``--dmlp`` flag to upstream repositories (import name ``dmlp_integrations``)."""
