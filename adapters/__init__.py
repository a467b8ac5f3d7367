"""Built-in dmlp-plugin adapters (import name ``dmlp_adapters``).

Each is registered through the ``dmlp_plugin`` entry-point group in ``pyproject.toml``,
exactly as a third-party adapter package would be.
"""
