"""Running a trained model fast: precision and the machine profile, export, INT8, and the runtimes."""
