"""The synthetic world: one family-agnostic scene generator (world.py) from which every
family's embedded mini dataset is built (one module per family)."""
