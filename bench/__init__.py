"""Benchmarks of starlette-refresh; they start servers through ``harness``, never through ``tests``."""

#: The signing key every benchmark uses (at least 32 bytes, as the library requires of HMAC keys).
SECRET = "bench-secret-0123456789-0123456789-0123456789-0123"  # noqa: S105 (a benchmark key)
