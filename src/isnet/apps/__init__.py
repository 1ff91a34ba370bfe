"""What users run: segmenting files, the demo, the HTTP server, videos, huge images and Ray
(the benchmarks are not in the package: ``benchmarks/`` in a checkout)."""
