"""First-party ctxbench plugins. Each module registers through the ``ctxbench``
entry-point group in pyproject.toml, exactly as a third-party plugin would."""
