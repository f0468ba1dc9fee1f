"""Family evaluators. Each module implements one family from SPEC.md; base.py holds
the request/response types shared by all."""
