"""Benchmarks (`make bench`): each compares two things in one run and prints the ratio."""
