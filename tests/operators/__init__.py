"""Test-only operators run against k8py as real subprocesses."""
