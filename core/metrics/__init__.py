"""Metric functions (numpy/torch in, plain floats or per-query arrays out)."""

from .mir import (mir_map, mir_map_per_query, mir_ndcg, mir_ndcg_per_query, mir_per_query,
                  mir_scores)

__all__ = ["mir_map", "mir_map_per_query", "mir_ndcg", "mir_ndcg_per_query", "mir_per_query",
           "mir_scores"]
