"""The torch-free core: what the PyTorch side and the runtime share, with numpy (and OpenCV for video) only.

- `errors`: the typed user errors (`UserError` and its kinds) every room raises;
- `pausing`: the pausing policy, the one place where a budget or threshold becomes tokens to keep;
- `cost`: the cost model a budget is a fraction of (MACs, or a device's measured latency);
- `contract`: the deployment bundle's manifest as typed dataclasses, and the graphs' tensor names;
- `windows`: the sliding-window layout; `atomic`: atomic writes; `cache`: where remade things live;
- `video`: the overlay / synthetic video writer; `imread`: image files read without the decoders' console noise;
- `knobs`: every knob's rule (budget, threshold, latency target, threads, stride, counts, sizes);
- `paths`: the path guard (no output is an input; every output writable) each verb calls before working;
- `memory`: memory estimates and the limit models and bundles are held to before anything is allocated.

`paumer_edge.runtime` may import this package; nothing here imports the model, data, training, export
or CLI code (a test holds that).
"""
