"""The job runtime: errors (errors.py), claiming, leases, heartbeats and
execution (runtime.py), and the one publish hook (queue.py)."""
