"""What every layer may use: errors in words, crash-safe files, progress, plots, processes.

Nothing here imports another part of isnet.
"""
