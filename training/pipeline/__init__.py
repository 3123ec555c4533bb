"""Attune's ML library: preferences -> reward models -> policies -> evaluation.

Plain Python, no Django imports: every stage is a function that takes a config
dataclass (paths in, paths out) and returns a result. The Django side only calls
these functions.
"""
