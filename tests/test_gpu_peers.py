"""TensorRT takes the peers' graphs: ToMe's merge (no scatter with reduction), PRO-SCALE's coarse grid, DToP's
early-exit stages and decoder. Marked `gpu`; skipped with the reason where TensorRT or an NVIDIA GPU is missing."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from paumer_edge import UserError

pytestmark = pytest.mark.gpu


def _why_not() -> str:
    try:
        from paumer_edge.runtime.gpu import cuda_runtime, gpu_info, tensorrt_module

        tensorrt_module()
        gpu_info(cuda_runtime())
        return ""
    except UserError as e:
        return str(e)


@pytest.mark.skipif(bool(_why_not()), reason=f"needs TensorRT and an NVIDIA GPU: {_why_not()}")
@pytest.mark.parametrize("graph", ["tome_r2.onnx", "proscale_b1.onnx", "dtop/stage1.onnx", "dtop/decoder.onnx"])
def test_tensorrt_parses_and_builds_the_peer_graphs(tiny_peers: Path, graph: str) -> None:
    from paumer_edge.runtime.gpu import tensorrt_module

    trt = tensorrt_module()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    model = onnx.load(str(tiny_peers / graph))
    assert parser.parse(model.SerializeToString()), [str(parser.get_error(i)) for i in range(parser.num_errors)]
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        t = network.get_input(i)
        shape = [d if d > 0 else 0 for d in t.shape]
        lo, hi = list(shape), list(shape)
        lo[0] = hi[0] = 1
        if t.name == "active":
            lo[1], hi[1] = 1, 32
        profile.set_shape(t.name, lo, [*lo[:1], *hi[1:]], hi)
    config.add_optimization_profile(profile)
    assert builder.build_serialized_network(network, config) is not None
