"""Dataset loaders: read real datasets from disk (official formats) into family-specific
in-memory structures. Procedurally generated (embedded) datasets live in ctxbench.synth."""
