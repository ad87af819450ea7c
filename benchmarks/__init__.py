"""aioqloop's benchmark workloads (a package only so that installed copies have module names
of their own; each bench_<name>.py also runs as a script)."""
