"""PyTorch -> deployment bundle (staged ONNX graphs, manifest, TensorRT engines)."""
