"""The runtimes a model can run in (PyTorch, ONNX Runtime, OpenVINO), behind one interface."""
