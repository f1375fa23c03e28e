"""Product benchmarks: scripts run by hand; their tests are in benchmarks/tests."""
