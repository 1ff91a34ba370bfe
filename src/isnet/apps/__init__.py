"""What users run: segmenting files, the demo, the HTTP server and the benchmarks."""
