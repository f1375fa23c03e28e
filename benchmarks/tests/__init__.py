"""Tests of the benchmark scripts, outside the default suite: python -m pytest benchmarks/tests"""
