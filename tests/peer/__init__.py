"""Peer test suites (third-party test files downloaded at test time, run on aioqloop)."""
