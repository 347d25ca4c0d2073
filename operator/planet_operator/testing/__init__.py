"""Test tooling shared by the test suite and the benchmarks (not used by the operator itself)."""
