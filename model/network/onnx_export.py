"""Export the genre classifier (MusiCNN backbones, summaries, head, calibrated softmax) to one ONNX
graph for the service's light runtime (`model.network.onnx_runtime`).

    python -m model.network.onnx_export [--weights DIR]

The graph is written node for node from the Keras layers' weights with `onnx.helper` (tf2onnx pins
an old numpy and protobuf): one graph from a batch of log-mel patches (n, frames, mels) of one track
to its genre probabilities and its patches' MSD embeddings, as `GenreClassifier.analyse_patches`
computes them. `model.train` exports after writing a head; the file records the digests of the
weights, the head's input and temperature it was made from, so a stale export is refused at load.
The musicnn wheel's licence notice is carried in the file's metadata.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import keras
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from model.atomic import atomic_write
from model.network.classifier import load_backbone
from model.network.head import LAYERS, HeadInput, load_head, read_head_info
from model.network.musicnn import BN_EPSILON
from model.network.onnx_runtime import METADATA_KEY, export_record
from model.network.shapes import EMBEDDING_DIM
from model.network.weights import DEFAULT_WEIGHTS_DIR, LICENCE_FILE, ONNX_FILE
from model.params import N_MELS, PATCH_FRAMES

OPSET = 17   # ReduceMax/ReduceMean take their axes as attributes up to 17
IR_VERSION = 8   # opset 17's, which ONNX Runtime >= 1.13 reads (a newer onnx writes a newer one by default)


class _Graph:
    """Nodes and initialisers being collected, with unique names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def tensor(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def const(self, name: str, value: np.ndarray) -> str:
        return self.tensor(name, np.asarray(value, np.float32))

    def op(self, op_type: str, inputs: list[str], name: str, **attributes) -> str:
        self.nodes.append(helper.make_node(op_type, inputs, [name], name=name, **attributes))
        return name

    def batch_norm(self, x: str, layer: keras.layers.BatchNormalization, name: str) -> str:
        gamma, beta, mean, variance = layer.get_weights()
        inputs = [self.const(f"{name}/{k}", v) for k, v in
                  (("gamma", gamma), ("beta", beta), ("mean", mean), ("variance", variance))]
        return self.op("BatchNormalization", [x, *inputs], name, epsilon=BN_EPSILON)

    def conv(self, x: str, layer: keras.layers.Layer, name: str, pads: list[int], sign: np.ndarray | None = None,
             multiple: int = 1) -> str:
        """The layer's convolution, before its ReLU: with `sign` (+1 or -1 per filter) each filter
        times its sign, with all-zero filters added up to a `multiple` of filters."""
        # Keras kernels are (spatial..., in, out); ONNX's are (out, in, spatial...).
        kernel, bias = layer.get_weights()
        if sign is not None:
            kernel, bias = kernel * sign, bias * sign
        extra = -len(bias) % multiple
        kernel = np.concatenate([kernel, np.zeros(kernel.shape[:-1] + (extra,), kernel.dtype)], axis=-1)
        w = self.const(f"{name}/kernel", np.moveaxis(kernel, [-1, -2], [0, 1]))
        return self.op("Conv", [x, w, self.const(f"{name}/bias", np.r_[bias, np.zeros(extra, bias.dtype)])],
                       f"{name}/conv", pads=pads)

    def front_end_branch(self, x: str, conv: keras.layers.Layer, bn: keras.layers.BatchNormalization,
                         name: str, pads: list[int]) -> str:
        """max over frequency of bn(relu(conv(x))), in that order in Keras, as bn(relu(max or min
        over frequency of conv(x))): ReLU and each channel's batch-norm scale are monotonic, so
        the maximum is taken before them (the minimum where the scale is negative), which is the
        same number but leaves only one (n, filters, time, freq) tensor to hold, not three.

        The minimum is minus the maximum of the negated filter (negation is exact: the outputs are
        bit for bit those of a ReduceMax and a ReduceMin), and the maximum is a MaxPool over all
        frequency positions: with the filters padded to a multiple of 16, ONNX Runtime pools in the
        convolution's own blocked layout instead of first copying its whole output back to NCHW
        (a 5-patch pass took 131 ms instead of 170 on 2 cores)."""
        gamma = bn.get_weights()[0]   # the sign of the scale gamma / sqrt(variance + epsilon)
        sign = np.where(gamma >= 0, 1.0, -1.0).astype(np.float32)
        c = self.conv(x, conv, name, pads, sign, multiple=16)
        bands = N_MELS - conv.kernel.shape[1] + 1
        pooled = self.op("MaxPool", [c], f"{name}/max_freq", kernel_shape=[1, bands])
        kept = self.op("Slice", [pooled, self.tensor(f"{name}/first", np.array([0], np.int64)),
                                 self.tensor(f"{name}/filters", np.array([len(sign)], np.int64)),
                                 self.tensor(f"{name}/axis1", np.array([1], np.int64))], f"{name}/real_filters")
        kept = self.op("Squeeze", [kept, self.tensor(f"{name}/axis3", np.array([3], np.int64))], f"{name}/squeeze")
        extreme = self.op("Mul", [kept, self.const(f"{name}/sign", sign[:, None])], f"{name}/extreme_freq")
        return self.batch_norm(self.op("Relu", [extreme], f"{name}/relu"), bn, f"{name}/bn")

    def weight(self, name: str, value: np.ndarray) -> str:
        """A float32 initialiser, stored as float16 and cast back where that is exact (a head saved in half
        precision, `atomic_save_weights`): half its bytes in the file; ONNX Runtime casts it once, when it
        loads the graph (constant folding)."""
        half = value.astype(np.float16)
        if not np.array_equal(half.astype(np.float32), value):
            return self.const(name, value)
        return self.op("Cast", [self.tensor(f"{name}/half", half)], name, to=TensorProto.FLOAT)

    def dense(self, x: str, layer: keras.layers.Dense, name: str) -> str:
        kernel, bias = layer.get_weights()
        return self.op("Gemm", [x, self.weight(f"{name}/kernel", kernel), self.const(f"{name}/bias", bias)], name)


def _same_pads(length: int) -> list[int]:
    """TensorFlow's 'same' padding of a (length x 1) kernel at stride 1: the odd one out goes after."""
    return [(length - 1) // 2, 0, length - 1 - (length - 1) // 2, 0]


def add_backbone(graph: _Graph, backbone: keras.Model, x: str, prefix: str) -> dict[str, str]:
    """`model.network.musicnn.build_musicnn`'s layers on `x` (n, frames, mels) in NCHW (time as H,
    mel bands as W): the names of its `pooled` (n, POOLED_DIM) and `embedding` (n, EMBEDDING_DIM) outputs."""
    layer = backbone.get_layer
    h = graph.op("Unsqueeze", [x, graph.tensor(f"{prefix}/axis1", np.array([1], np.int64))], f"{prefix}/channels")
    h = graph.batch_norm(h, layer("batch_normalization"), f"{prefix}/input_bn")
    fronts = []
    for i in range(5):   # timbral (time padded by 3), then temporal ('same' in time)
        name = "conv2d" if i == 0 else f"conv2d_{i}"
        pads = [3, 0, 3, 0] if i < 2 else _same_pads(layer(name).kernel.shape[0])
        fronts.append(graph.front_end_branch(h, layer(name), layer(f"batch_normalization_{i + 1}"),
                                             f"{prefix}/{name}", pads))
    h = graph.op("Concat", fronts, f"{prefix}/front", axis=1)     # (n, 561, time)
    mids = [h]
    for i in range(3):                                    # mid-end Conv1D over time, the last two residual
        name = f"conv2d_{i + 5}"
        c = graph.op("Relu", [graph.conv(h, layer(name), f"{prefix}/{name}", pads=[3, 3])], f"{prefix}/{name}/relu")
        c = graph.batch_norm(c, layer(f"batch_normalization_{i + 6}"), f"{prefix}/{name}/bn")
        h = c if i == 0 else graph.op("Add", [c, h], f"{prefix}/{name}/residual")
        mids.append(h)
    features = graph.op("Concat", mids, f"{prefix}/features", axis=1)   # (n, 753, time)
    # Max and mean over time, interleaved per feature as the Keras port flattens its (753, 2) stack.
    stats = [graph.op("ReduceMax", [features], f"{prefix}/max_time", axes=[2], keepdims=1),
             graph.op("ReduceMean", [features], f"{prefix}/mean_time", axes=[2], keepdims=1)]
    pooled = graph.op("Reshape", [graph.op("Concat", stats, f"{prefix}/stack", axis=2),
                                  graph.tensor(f"{prefix}/flat", np.array([0, -1], np.int64))], f"{prefix}/pooled")
    hidden = graph.batch_norm(pooled, layer("batch_normalization_9"), f"{prefix}/pooled_bn")
    embedding = graph.op("Relu", [graph.dense(hidden, layer("dense"), f"{prefix}/dense")], f"{prefix}/embedding")
    return {"pooled": pooled, "embedding": embedding}


def _summaries(graph: _Graph, x: str, summaries: tuple[str, ...]) -> str:
    """`model.network.head.summarise` over the patches (axis 0), as a (1, d) row."""
    mean = graph.op("ReduceMean", [x], "summary/mean", axes=[0], keepdims=1)
    return graph.op("Concat", [{"mean": mean}[s] for s in summaries], "summary", axis=1)


def _output(name: str, shape: list) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _model(graph: _Graph, outputs: list[onnx.ValueInfoProto], metadata: dict[str, str]) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("log_mel", TensorProto.FLOAT, ["patches", PATCH_FRAMES, N_MELS])
    model = helper.make_model(helper.make_graph(graph.nodes, "soundalike", [x], outputs, graph.initializers),
                              opset_imports=[helper.make_opsetid("", OPSET)], producer_name="soundalike",
                              ir_version=IR_VERSION)
    helper.set_model_props(model, metadata)
    onnx.checker.check_model(model)
    return model


def backbone_model(backbone: keras.Model) -> onnx.ModelProto:
    """One backbone alone: `pooled` and `embedding` per patch (for checks against Keras)."""
    graph = _Graph()
    names = add_backbone(graph, backbone, "log_mel", "backbone")
    outputs = [_output(graph.op("Identity", [names[k]], k), ["patches", LAYERS[k]]) for k in ("pooled", "embedding")]
    return _model(graph, outputs, {})


def _per_patch(graph: _Graph, backbones: dict[str, keras.Model], wanted: list[tuple[str, str]]) -> list[str]:
    """The backbones' `wanted` (backbone, layer) outputs (n, dim) of the patches "log_mel", computed
    one patch at a time by a Scan: the front end's activations of one patch are ~20 MB, so a pass
    holds (and ONNX Runtime's arena keeps) a fifth of what a 5-patch batch would, at the same speed."""
    body = _Graph()
    batch = body.op("Unsqueeze", ["patch", body.tensor("patch/axis0", np.array([0], np.int64))], "patch/batch")
    outputs = {name: add_backbone(body, backbones[name], batch, name) for name in backbones}
    results = [_output(body.op("Squeeze", [outputs[b][layer], "patch/axis0"], f"{b}/{layer}/patch"), [LAYERS[layer]])
               for b, layer in wanted]
    patch = helper.make_tensor_value_info("patch", TensorProto.FLOAT, [PATCH_FRAMES, N_MELS])
    names = [f"patches/{b}/{layer}" for b, layer in wanted]
    graph.nodes.append(helper.make_node("Scan", ["log_mel"], names, name="patches", num_scan_inputs=1,
                                        body=helper.make_graph(body.nodes, "patch", [patch], results,
                                                               body.initializers)))
    return names


def classifier_model(backbones: dict[str, keras.Model], head: keras.Model, head_input: HeadInput,
                     temperature: float, metadata: dict[str, str], temperature_one_patch: float | None = None
                     ) -> onnx.ModelProto:
    """The service's graph: `probabilities` (genres,) of the track the patches make and the MSD
    `embedding` (n, EMBEDDING_DIM) of each patch. The logits are divided by `temperature`, or by
    `temperature_one_patch` where the track is one patch (shorter than two patches, ~6 s: the head is
    more over-confident there, `model.evaluate.fit_temperatures`)."""
    graph = _Graph()
    wanted = list(dict.fromkeys([("msd", "embedding")] + [(b, head_input.layer) for b in head_input.backbones]))
    outputs = dict(zip(wanted, _per_patch(graph, backbones, wanted)))
    features = [outputs[(b, head_input.layer)] for b in head_input.backbones]
    joined = features[0] if len(features) == 1 else graph.op("Concat", features, "head/features", axis=1)
    if head_input.hidden:   # the head's own back-end, per patch
        joined = graph.op("Relu", [graph.dense(joined, head.get_layer("backend"), "head/backend")], "head/backend/relu")
    logits = graph.dense(_summaries(graph, joined, head_input.summaries), head.get_layer("genre"), "head/genre")
    divisor = graph.const("head/temperature", np.array(temperature, np.float32))
    if temperature_one_patch is not None:
        count = graph.op("Gather", [graph.op("Shape", ["log_mel"], "head/shape"),
                                    graph.tensor("head/index0", np.array(0, np.int64))], "head/patches", axis=0)
        one = graph.op("Equal", [count, graph.tensor("head/one", np.array(1, np.int64))], "head/one_patch")
        divisor = graph.op("Where", [one, graph.const("head/temperature_one_patch",
                                                       np.array(temperature_one_patch, np.float32)), divisor],
                           "head/divisor")
    scaled = graph.op("Div", [logits, divisor], "head/scaled")
    probs = graph.op("Softmax", [scaled], "head/softmax", axis=1)
    axis0 = graph.tensor("head/axis0", np.array([0], np.int64))
    result = [_output(graph.op("Squeeze", [probs, axis0], "probabilities"), [head.get_layer("genre").units]),
              _output(graph.op("Identity", [outputs[("msd", "embedding")]], "embedding"), ["patches", EMBEDDING_DIM])]
    return _model(graph, result, metadata)


def export(weights_dir: Path = DEFAULT_WEIGHTS_DIR) -> Path:
    """Write `weights_dir`'s classifier as ONNX (ONNX_FILE) beside its Keras weights; returns its path."""
    weights_dir = Path(weights_dir)
    info = read_head_info(weights_dir)
    head_input = HeadInput.from_json(info["input"])
    head = load_head(weights_dir, head_input)
    backbones = {name: load_backbone(weights_dir, name) for name in dict.fromkeys(("msd",) + head_input.backbones)}
    licence = weights_dir / LICENCE_FILE
    metadata = {METADATA_KEY: json.dumps(export_record(weights_dir, info)),
                "licence": licence.read_text() if licence.exists() else ""}
    model = classifier_model(backbones, head, head_input, info.get("temperature", 1.0), metadata,
                             info.get("temperature_one_patch"))
    target = weights_dir / ONNX_FILE
    with atomic_write(target) as f:
        f.write(model.SerializeToString())
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS_DIR, help="weights folder (default: weights/)")
    print(f"wrote {export(parser.parse_args(argv).weights)}")


if __name__ == "__main__":
    main()
