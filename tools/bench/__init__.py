"""Benchmarks that print figures (docs/BENCHMARKS.md quotes them with their commands), and the fuzzer of
the `.otok` reader (`fuzz_bitstream`)."""
