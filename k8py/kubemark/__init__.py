"""kubemark: hollow nodes that register with the cluster and report pods running, without
running anything (for controller tests and benchmarks at scale)."""
