"""Developer scripts (`make demo`); a package so the benches can import its helpers as `scripts.servers`."""
