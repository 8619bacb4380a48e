"""Conv followed by one node, for the Conv folding tests."""
import numpy as np
from onnx import helper

from support.pass_check import init, model

RNG = np.random.default_rng(0)
W = RNG.standard_normal((4, 3, 3, 3)).astype(np.float32)
B = RNG.standard_normal(4).astype(np.float32)
X = RNG.standard_normal((2, 3, 6, 6)).astype(np.float32)


def conv_then(op, const, bias=True, conv_output_read_twice=False, const_first=False, const_is_input=False):
    """x -> Conv(W[, B]) -> op(., const) -> Relu -> y; the const an initializer or a graph input."""
    conv_in = ["x", "W", "B"] if bias else ["x", "W"]
    ins = ["k", "c"] if const_first else ["c", "k"]
    nodes = [helper.make_node("Conv", conv_in, ["c"], pads=[1, 1, 1, 1]), helper.make_node(op, ins, ["a"]),
             helper.make_node("Relu", ["a"], ["y"])]
    outs = [("y", 1, None)]
    if conv_output_read_twice:
        nodes.append(helper.make_node("Neg", ["c"], ["z"]))
        outs.append(("z", 1, None))
    inputs = [("x", 1, [2, 3, 6, 6])]
    inits = [init("W", W)] + ([init("B", B)] if bias else [])
    if const_is_input:
        inputs.append(("k", 1, list(const.shape)))
    else:
        inits.append(init("k", const))
    return model(nodes, inputs, outs, inits)
