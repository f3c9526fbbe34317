"""`mild-bench`: per-stage latency of the MILD pipeline on any backend, beside its compute floor.

timing   a Backend wrapper that times every graph call between device synchronisations
cases    the benchmark cases (N, resolution, steps, guidance) and their timed runs
floor    FLOPs counted from the model on the meta device, and the device's measured matrix rate
backends which backend runs a benchmark (one small registry, so TensorRT slots in)
report   the table, the JSON file and the PNG plot
"""
