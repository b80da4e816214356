"""PyTorch -> deployment bundle (staged ONNX graphs, manifest, TensorRT engines)."""

# Raised whenever the exported graphs change for the same checkpoint, so cached exports are remade.
# Here (not in graphs.py) so the torch-free runtime can read it.
GRAPHS_REVISION = 6  # 3: the temporal-reuse stage graphs; 4: their context mask without Where; 5: their cache
# one per stage and never copied, the context as patch positions (format 5); 6: GELU in the form ONNX Runtime fuses,
# each block's context rows gathered straight from the cache
