"""ctxbench's task definitions (YAML). This file only makes the folder installable."""
