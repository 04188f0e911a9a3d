"""Benchmarks of the project's hot paths, each stamped with the machine, device and torch version.

`python -m bench.bench_train` (= `make bench`): training and scoring throughput against the
DataLoader + PIL reference path; see BENCHMARKS.md for the recorded results.
"""
