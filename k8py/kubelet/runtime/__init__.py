"""Container runtimes behind the CRI-shaped interface (interface.py): cri, process, simulated."""
