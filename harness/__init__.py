"""Real redis-server and uvicorn processes, shared by the tests and the benchmarks."""
