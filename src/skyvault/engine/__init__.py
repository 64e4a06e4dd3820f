"""Query execution: plans, partition pruning, per-partition execution, merging."""
