"""The project's own TFLite flatbuffer -> ONNX converter (opset 13, float32, NCHW).

It supports exactly the operators used by mediapipe's face detector (short and full range) and face mesh models:
CONV_2D, DEPTHWISE_CONV_2D, ADD, PRELU, RELU, MAX_POOL_2D, PAD, RESHAPE, CONCATENATION, RESIZE_BILINEAR,
DEPTH_TO_SPACE, and the weight ops DEQUANTIZE (fp16 -> fp32) and DENSIFY (sparse -> dense), which are folded into
float32 initializers at conversion time. Anything else raises ``ModelError`` naming the operators.

Layout: TFLite activations are NHWC; every rank-4 activation is kept NCHW in the ONNX graph (the model input
included), weights are transposed once at conversion, and ops whose meaning depends on the memory order
(RESHAPE) see their input transposed back to NHWC first. Graph outputs are returned in TFLite's own layout
(NHWC for rank 4) unless flattened, so they equal the interpreter's values.

Input normalisation is not folded into the graph: callers feed what the TFLite model expects.

CPU-friendly rewrites (``cpu_friendly=True``, the default): onnxruntime runs convolutions in a blocked channel
layout (NCHWc) and must reorder the tensor back to NCHW around any operator it cannot run in that layout. PRelu and
Pad are two such operators, and the face mesh has one PRelu after nearly every block, so the reorders and a slow
generic PRelu took more than half of its time. Both are therefore emitted as equivalent 1x1 convolutions (exact up
to float rounding): a per-channel PRelu as y + (1 - slope) * Relu(-y), i.e. depthwise Conv(-1) -> Relu ->
depthwise Conv(1 - slope) -> Add; a zero Pad of the channel axis only as Conv with an identity-then-zeros weight.
Measured on 2 cores: mesh pass 5.0 -> 2.1 ms, short-range detector 2.1 -> 1.5 ms.
"""
import hashlib
import os
from dataclasses import dataclass

import numpy as np
import onnx
import tflite
from onnx import TensorProto, helper, numpy_helper

from util.errors import ModelError

OPSET = 13
PRODUCER_NAME = "ax-facial-features util.tflite_to_onnx"

NHWC_TO_NCHW = (0, 3, 1, 2)
NCHW_TO_NHWC = (0, 2, 3, 1)

_TFLITE_DTYPES = {
    tflite.TensorType.FLOAT32: np.float32,
    tflite.TensorType.FLOAT16: np.float16,
    tflite.TensorType.INT32: np.int32,
    tflite.TensorType.INT64: np.int64,
    tflite.TensorType.UINT8: np.uint8,
    tflite.TensorType.INT8: np.int8,
}

_OPCODE_NAMES = {code: name for name, code in vars(tflite.BuiltinOperator).items() if not name.startswith("_")}


@dataclass(frozen=True)
class OutputSpec:
    """How one TFLite output appears in the ONNX graph."""

    name: str
    flatten: bool = False  # Flatten(axis=1): (N, 1, 1, K) -> (N, K)


def convert_tflite_file(tflite_path, *, input_name="input", outputs=None, dynamic_batch=False,
                        doc_string="", metadata=None, cpu_friendly=True):
    """Convert a single-input TFLite model file into an ``onnx.ModelProto``.

    ``outputs``: one OutputSpec (or plain name) per TFLite output, in TFLite output order; default keeps names.
    ``dynamic_batch``: the first input/output axis becomes symbolic ("batch"); every reshape is batch-agnostic.
    ``cpu_friendly``: PRelu and channel Pad as 1x1 convolutions (module docstring); False keeps them literal.
    """
    with open(tflite_path, "rb") as f:
        data = f.read()
    props = {"source_file": os.path.basename(tflite_path), "source_sha256": hashlib.sha256(data).hexdigest()}
    props.update(metadata or {})
    graph = _TfliteGraph(data)
    model = _Converter(graph, input_name=input_name, outputs=outputs, dynamic_batch=dynamic_batch,
                       cpu_friendly=cpu_friendly).build(
        name=os.path.splitext(os.path.basename(tflite_path))[0], doc_string=doc_string)
    for key, value in sorted(props.items()):
        model.metadata_props.add(key=key, value=str(value))
    onnx.checker.check_model(model)
    return model


def operator_names(tflite_path):
    """Set of builtin operator names a TFLite model uses (for coverage checks)."""
    with open(tflite_path, "rb") as f:
        graph = _TfliteGraph(f.read())
    return {graph.op_name(op) for op in graph.operators()}


def supported_operators():
    return set(_HANDLERS)


# --------------------------------------------------------------------------------------------------------------
# Flatbuffer access


class _TfliteGraph:
    """Thin typed view over subgraph 0 of a TFLite flatbuffer."""

    def __init__(self, data):
        self.model = tflite.Model.GetRootAsModel(data, 0)
        if self.model.SubgraphsLength() != 1:
            raise ModelError(f"expected one subgraph, found {self.model.SubgraphsLength()}")
        self.subgraph = self.model.Subgraphs(0)

    def operators(self):
        return [self.subgraph.Operators(i) for i in range(self.subgraph.OperatorsLength())]

    def op_name(self, op):
        code = self.model.OperatorCodes(op.OpcodeIndex())
        # Old files store the code in the deprecated int8 field, new ones in the int32 field: take the larger.
        value = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if value == tflite.BuiltinOperator.CUSTOM:
            return "CUSTOM:" + code.CustomCode().decode()
        return _OPCODE_NAMES.get(value, f"OPCODE_{value}")

    @staticmethod
    def op_inputs(op):
        return [op.Inputs(i) for i in range(op.InputsLength())]

    @staticmethod
    def op_outputs(op):
        return [op.Outputs(i) for i in range(op.OutputsLength())]

    @staticmethod
    def options(op, options_class):
        table = op.BuiltinOptions()
        opts = options_class()
        if table is not None:
            opts.Init(table.Bytes, table.Pos)
        return opts

    def tensor(self, index):
        return self.subgraph.Tensors(index)

    def name(self, index):
        return self.tensor(index).Name().decode()

    def shape(self, index):
        return tuple(int(d) for d in self.tensor(index).ShapeAsNumpy())

    def dtype(self, index):
        type_id = self.tensor(index).Type()
        if type_id not in _TFLITE_DTYPES:
            raise ModelError(f"tensor {self.name(index)}: unsupported TFLite type {type_id}")
        return _TFLITE_DTYPES[type_id]

    def inputs(self):
        return [self.subgraph.Inputs(i) for i in range(self.subgraph.InputsLength())]

    def outputs(self):
        return [self.subgraph.Outputs(i) for i in range(self.subgraph.OutputsLength())]

    def constant(self, index):
        """The tensor's stored value (dense, TFLite layout), or None for an activation."""
        tensor = self.tensor(index)
        buffer = self.model.Buffers(tensor.Buffer())
        if buffer is None or buffer.DataLength() == 0:
            return None
        raw = buffer.DataAsNumpy().tobytes()
        values = np.frombuffer(raw, dtype=self.dtype(index))
        if tensor.Sparsity() is not None:
            return _densify(values, self.shape(index), tensor.Sparsity())
        return values.reshape(self.shape(index)).copy()


def _index_vector(table, vector_type):
    """Read a SparseIndexVector union member as an int64 array."""
    classes = {
        tflite.SparseIndexVector.Int32Vector: tflite.Int32Vector,
        tflite.SparseIndexVector.Uint16Vector: tflite.Uint16Vector,
        tflite.SparseIndexVector.Uint8Vector: tflite.Uint8Vector,
    }
    if vector_type not in classes:
        raise ModelError(f"unsupported sparse index vector type {vector_type}")
    vector = classes[vector_type]()
    vector.Init(table.Bytes, table.Pos)
    return vector.ValuesAsNumpy().astype(np.int64)


def _densify(values, shape, sparsity):
    """Expand a TFLite sparse tensor (DENSE / SPARSE_CSR levels, identity traversal, no blocks) to dense."""
    rank = len(shape)
    traversal = list(sparsity.TraversalOrderAsNumpy()) if sparsity.TraversalOrderLength() else list(range(rank))
    if traversal != list(range(rank)) or sparsity.BlockMapLength():
        raise ModelError("block-sparse or reordered sparse tensors are not supported")
    flat = np.zeros(1, np.int64)  # dense flat index of each stored node at the current level
    position = np.zeros(1, np.int64)  # index of each node in that level's storage
    for level in range(rank):
        meta = sparsity.DimMetadata(level)
        size = shape[level]
        if meta.Format() == tflite.DimensionType.DENSE:
            children = np.arange(meta.DenseSize(), dtype=np.int64)
            flat = (flat[:, None] * size + children).ravel()
            position = (position[:, None] * meta.DenseSize() + children).ravel()
        else:  # SPARSE_CSR: segments[p]..segments[p+1] index the stored coordinates of node p's children
            segments = _index_vector(meta.ArraySegments(), meta.ArraySegmentsType())
            coordinates = _index_vector(meta.ArrayIndices(), meta.ArrayIndicesType())
            starts, ends = segments[position], segments[position + 1]
            counts = ends - starts
            position = np.concatenate([np.arange(s, e) for s, e in zip(starts, ends)]) if counts.sum() else \
                np.zeros(0, np.int64)
            flat = np.repeat(flat, counts) * size + coordinates[position]
    if len(position) != len(values):
        raise ModelError(f"sparse tensor holds {len(values)} values but its index describes {len(position)}")
    dense = np.zeros(int(np.prod(shape)), dtype=values.dtype)
    dense[flat] = values[position]
    return dense.reshape(shape)


# --------------------------------------------------------------------------------------------------------------
# Graph building


def _same_padding(in_size, kernel, stride, dilation):
    """TFLite SAME padding (before, after): the odd pixel goes after, as in TensorFlow."""
    out_size = (in_size + stride - 1) // stride
    effective = (kernel - 1) * dilation + 1
    total = max((out_size - 1) * stride + effective - in_size, 0)
    return total // 2, total - total // 2


def _spatial_pads(padding, in_hw, kernel_hw, strides, dilations=(1, 1)):
    """ONNX pads [top, left, bottom, right] for TFLite SAME / VALID."""
    if padding == tflite.Padding.VALID:
        return [0, 0, 0, 0]
    (top, bottom), (left, right) = (_same_padding(in_hw[i], kernel_hw[i], strides[i], dilations[i]) for i in (0, 1))
    return [top, left, bottom, right]


class _Converter:
    def __init__(self, graph, *, input_name, outputs, dynamic_batch, cpu_friendly=True):
        self.graph = graph
        self.cpu_friendly = cpu_friendly
        self.input_name = input_name
        self.dynamic_batch = dynamic_batch
        self.output_specs = self._output_specs(outputs)
        self.nodes = []
        self.initializers = []
        self.values = {}  # tflite tensor index -> ONNX name (activations)
        self.constants = {}  # tflite tensor index -> numpy array (TFLite layout), folded weights included
        self.used_names = set()

    def _output_specs(self, outputs):
        indices = self.graph.outputs()
        if outputs is None:
            return [OutputSpec(self.graph.name(i)) for i in indices]
        if len(outputs) != len(indices):
            raise ValueError(f"model has {len(indices)} outputs, {len(outputs)} names given")
        return [o if isinstance(o, OutputSpec) else OutputSpec(o) for o in outputs]

    # names ----------------------------------------------------------------------------------------------------

    def fresh(self, base):
        name, n = base, 1
        while name in self.used_names:
            n += 1
            name = f"{base}_{n}"
        self.used_names.add(name)
        return name

    def output_of(self, index):
        """ONNX name for the activation produced into TFLite tensor ``index``."""
        name = self.fresh(self.graph.name(index) or f"tensor_{index}")
        self.values[index] = name
        return name

    def add_node(self, op_type, inputs, outputs, **attrs):
        self.nodes.append(helper.make_node(op_type, inputs, outputs, name=self.fresh(f"{op_type}_{len(self.nodes)}"),
                                           **attrs))

    def add_initializer(self, array, base):
        name = self.fresh(base)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    # operands -------------------------------------------------------------------------------------------------

    def is_constant(self, index):
        return index in self.constants

    def activation(self, index):
        if index not in self.values:
            raise ModelError(f"tensor {self.graph.name(index)} is used before being produced")
        return self.values[index]

    def constant(self, index):
        if index not in self.constants:
            raise ModelError(f"tensor {self.graph.name(index)} was expected to be a constant")
        return self.constants[index]

    def operand(self, index, *, broadcast_rank):
        """An activation, or a constant laid out to broadcast against a rank-``broadcast_rank`` NCHW activation."""
        if not self.is_constant(index):
            return self.activation(index)
        value = self.constant(index).astype(np.float32)
        if broadcast_rank == 4 and value.ndim >= 1:
            value = value.reshape((1,) * (4 - value.ndim) + value.shape).transpose(NHWC_TO_NCHW)
        return self.add_initializer(value, self.graph.name(index))

    # build ----------------------------------------------------------------------------------------------------

    def build(self, name, doc_string):
        inputs = self.graph.inputs()
        if len(inputs) != 1:
            raise ModelError(f"expected one model input, found {len(inputs)}")
        for index in range(self.graph.subgraph.TensorsLength()):
            value = self.graph.constant(index)
            if value is not None:
                self.constants[index] = value
        # Reserve the public names so that no internal tensor takes them.
        self.used_names.update([self.input_name] + [spec.name for spec in self.output_specs])
        self.values[inputs[0]] = self.input_name

        unsupported = sorted({self.graph.op_name(op) for op in self.graph.operators()} - set(_HANDLERS))
        if unsupported:
            raise ModelError(f"unsupported TFLite operators: {', '.join(unsupported)}")
        for op in self.graph.operators():
            _HANDLERS[self.graph.op_name(op)](self, op)

        graph_outputs = [self._emit_output(index, spec) for index, spec in zip(self.graph.outputs(), self.output_specs)]
        graph_input = self._value_info(self.input_name, self._nchw(self.graph.shape(inputs[0])))
        graph = helper.make_graph(self.nodes, name, [graph_input], graph_outputs, initializer=self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name=PRODUCER_NAME,
                                  doc_string=doc_string)
        model.ir_version = 8  # opset 13 era; loadable by older runtimes too
        return model

    @staticmethod
    def _nchw(shape):
        return tuple(shape[i] for i in NHWC_TO_NCHW) if len(shape) == 4 else tuple(shape)

    def _value_info(self, name, shape):
        dims = list(shape)
        if self.dynamic_batch and dims:
            dims[0] = "batch"
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)

    def _emit_output(self, index, spec):
        source = self.activation(index)
        shape = self.graph.shape(index)
        if len(shape) == 4:  # back to TFLite's NHWC so the values equal the interpreter's
            nhwc = self.fresh(f"{spec.name}_nhwc")
            self.add_node("Transpose", [source], [nhwc], perm=list(NCHW_TO_NHWC))
            source = nhwc
        if spec.flatten:
            self.add_node("Flatten", [source], [spec.name], axis=1)
            shape = (shape[0], int(np.prod(shape[1:])))
        else:
            self.add_node("Identity", [source], [spec.name])
        return self._value_info(spec.name, shape)

    def emit(self, op_type, inputs, target_index, activation=tflite.ActivationFunctionType.NONE, **attrs):
        """Append ``op_type`` producing TFLite tensor ``target_index``, then its fused activation, if any."""
        final = self.output_of(target_index)
        if activation == tflite.ActivationFunctionType.NONE:
            self.add_node(op_type, inputs, [final], **attrs)
            return
        raw = self.fresh(f"{final}_pre_activation")
        self.add_node(op_type, inputs, [raw], **attrs)
        if activation == tflite.ActivationFunctionType.RELU:
            self.add_node("Relu", [raw], [final])
        elif activation == tflite.ActivationFunctionType.RELU6:
            self._clip(raw, final, 0.0, 6.0)
        elif activation == tflite.ActivationFunctionType.RELU_N1_TO_1:
            self._clip(raw, final, -1.0, 1.0)
        elif activation == tflite.ActivationFunctionType.TANH:
            self.add_node("Tanh", [raw], [final])
        else:
            raise ModelError(f"unsupported fused activation {activation} after {op_type}")

    def _clip(self, source, target, low, high):
        low_name = self.add_initializer(np.array(low, np.float32), f"{target}_min")
        high_name = self.add_initializer(np.array(high, np.float32), f"{target}_max")
        self.add_node("Clip", [source, low_name, high_name], [target])


# --------------------------------------------------------------------------------------------------------------
# Operator handlers: one per TFLite builtin, each appends ONNX nodes for one TFLite operator.


def _bias(conv, index, channels, base):
    bias = conv.constant(index) if index >= 0 else np.zeros(channels, np.float32)
    return conv.add_initializer(bias.astype(np.float32), base)


def _convert_conv_2d(conv, op):
    g = conv.graph
    x, w, b = g.op_inputs(op)
    (y,) = g.op_outputs(op)
    opts = g.options(op, tflite.Conv2DOptions)
    weight = conv.constant(w).astype(np.float32)  # OHWI
    strides, dilations = [opts.StrideH(), opts.StrideW()], [opts.DilationHFactor(), opts.DilationWFactor()]
    pads = _spatial_pads(opts.Padding(), g.shape(x)[1:3], weight.shape[1:3], strides, dilations)
    w_name = conv.add_initializer(weight.transpose(0, 3, 1, 2), g.name(w))
    conv.emit("Conv", [conv.activation(x), w_name, _bias(conv, b, weight.shape[0], f"{g.name(w)}_bias")], y,
              opts.FusedActivationFunction(), kernel_shape=list(weight.shape[1:3]), strides=strides,
              dilations=dilations, pads=pads, group=1)


def _convert_depthwise_conv_2d(conv, op):
    g = conv.graph
    x, w, b = g.op_inputs(op)
    (y,) = g.op_outputs(op)
    opts = g.options(op, tflite.DepthwiseConv2DOptions)
    weight = conv.constant(w).astype(np.float32)  # 1 x H x W x (C * multiplier)
    strides, dilations = [opts.StrideH(), opts.StrideW()], [opts.DilationHFactor(), opts.DilationWFactor()]
    pads = _spatial_pads(opts.Padding(), g.shape(x)[1:3], weight.shape[1:3], strides, dilations)
    # ONNX grouped conv: (C * multiplier, 1, H, W) with group = C; TFLite's channel order c * multiplier + m matches.
    w_name = conv.add_initializer(weight.transpose(3, 0, 1, 2), g.name(w))
    conv.emit("Conv", [conv.activation(x), w_name, _bias(conv, b, weight.shape[3], f"{g.name(w)}_bias")], y,
              opts.FusedActivationFunction(), kernel_shape=list(weight.shape[1:3]), strides=strides,
              dilations=dilations, pads=pads, group=g.shape(x)[3])


def _convert_add(conv, op):
    g = conv.graph
    a, b = g.op_inputs(op)
    (y,) = g.op_outputs(op)
    rank = len(g.shape(y))
    conv.emit("Add", [conv.operand(a, broadcast_rank=rank), conv.operand(b, broadcast_rank=rank)], y,
              g.options(op, tflite.AddOptions).FusedActivationFunction())


def _convert_prelu(conv, op):
    g = conv.graph
    x, alpha = g.op_inputs(op)
    (y,) = g.op_outputs(op)
    slope = conv.constant(alpha).astype(np.float32)
    if len(g.shape(x)) == 4:  # NHWC-broadcast slope (.., H?, W?, C) -> (C, H?, W?) for NCHW
        slope = slope.reshape((1,) * (3 - slope.ndim) + slope.shape[-3:]).transpose(2, 0, 1)
    if conv.cpu_friendly and slope.ndim == 3 and slope.shape[1:] == (1, 1):
        _emit_prelu_as_convolutions(conv, conv.activation(x), slope.reshape(-1), y, g.name(alpha))
        return
    conv.emit("PRelu", [conv.activation(x), conv.add_initializer(slope, g.name(alpha))], y)


def _depthwise_1x1(conv, source, scale, base):
    """Name of Conv(source) multiplying channel c by scale[c] (a grouped 1x1 convolution)."""
    channels = scale.size
    weight = conv.add_initializer(scale.reshape(channels, 1, 1, 1).astype(np.float32), f"{base}_weight")
    target = conv.fresh(base)
    conv.add_node("Conv", [source, weight], [target], kernel_shape=[1, 1], group=channels)
    return target


def _emit_prelu_as_convolutions(conv, source, slope, target_index, base):
    """PRelu(y) = y + (1 - slope) * Relu(-y), per channel, with convolutions onnxruntime keeps in NCHWc."""
    negated = _depthwise_1x1(conv, source, -np.ones_like(slope), f"{base}_negated")
    negative_part = conv.fresh(f"{base}_negative_part")
    conv.add_node("Relu", [negated], [negative_part])
    correction = _depthwise_1x1(conv, negative_part, 1.0 - slope, f"{base}_correction")
    conv.emit("Add", [correction, source], target_index)


def _convert_relu(conv, op):
    g = conv.graph
    (x,), (y,) = g.op_inputs(op), g.op_outputs(op)
    conv.emit("Relu", [conv.activation(x)], y)


def _convert_max_pool_2d(conv, op):
    g = conv.graph
    (x,), (y,) = g.op_inputs(op), g.op_outputs(op)
    opts = g.options(op, tflite.Pool2DOptions)
    kernel, strides = [opts.FilterHeight(), opts.FilterWidth()], [opts.StrideH(), opts.StrideW()]
    pads = _spatial_pads(opts.Padding(), g.shape(x)[1:3], kernel, strides)
    conv.emit("MaxPool", [conv.activation(x)], y, opts.FusedActivationFunction(), kernel_shape=kernel,
              strides=strides, pads=pads)


def _convert_pad(conv, op):
    g = conv.graph
    x, paddings = g.op_inputs(op)[:2]
    (y,) = g.op_outputs(op)
    pad = conv.constant(paddings).astype(np.int64)  # (rank, 2) before/after, TFLite axis order
    rank = len(g.shape(x))
    if conv.cpu_friendly and rank == 4 and not pad[:3].any() and pad[3, 0] == 0:
        # Zero channels appended (BlazeFace / mesh residual shortcuts): a 1x1 Conv with weight [identity; zeros].
        channels = g.shape(x)[3]
        weight = np.zeros((channels + pad[3, 1], channels, 1, 1), np.float32)
        weight[np.arange(channels), np.arange(channels), 0, 0] = 1.0
        conv.emit("Conv", [conv.activation(x), conv.add_initializer(weight, f"{g.name(paddings)}_as_conv")], y,
                  kernel_shape=[1, 1])
        return
    order = NHWC_TO_NCHW if rank == 4 else tuple(range(len(pad)))
    onnx_pads = np.array([pad[a, 0] for a in order] + [pad[a, 1] for a in order], np.int64)
    conv.emit("Pad", [conv.activation(x), conv.add_initializer(onnx_pads, f"{g.name(paddings)}_onnx")], y,
              mode="constant")


def _convert_reshape(conv, op):
    g = conv.graph
    inputs = g.op_inputs(op)
    x, (y,) = inputs[0], g.op_outputs(op)
    if len(inputs) > 1 and inputs[1] >= 0 and conv.is_constant(inputs[1]):
        new_shape = [int(d) for d in conv.constant(inputs[1]).ravel()]
    else:
        new_shape = [int(d) for d in g.options(op, tflite.ReshapeOptions).NewShapeAsNumpy()]
    source = conv.activation(x)
    if len(g.shape(x)) == 4:  # reshape follows TFLite's memory order: NHWC
        nhwc = conv.fresh(f"{source}_nhwc")
        conv.add_node("Transpose", [source], [nhwc], perm=list(NCHW_TO_NHWC))
        source = nhwc
    # Batch-agnostic: 0 copies the input's batch size, so a batch of N works although TFLite says 1.
    new_shape[0] = 0
    shape_name = conv.add_initializer(np.array(new_shape, np.int64), f"{g.name(y)}_shape")
    if len(g.shape(y)) == 4:
        reshaped = conv.fresh(f"{g.name(y)}_nhwc")
        conv.add_node("Reshape", [source, shape_name], [reshaped])
        conv.emit("Transpose", [reshaped], y, perm=list(NHWC_TO_NCHW))
    else:
        conv.emit("Reshape", [source, shape_name], y)


def _convert_concatenation(conv, op):
    g = conv.graph
    inputs, (y,) = g.op_inputs(op), g.op_outputs(op)
    opts = g.options(op, tflite.ConcatenationOptions)
    rank = len(g.shape(y))
    axis = opts.Axis() % rank
    if rank == 4:
        axis = NHWC_TO_NCHW.index(axis)
    conv.emit("Concat", [conv.operand(i, broadcast_rank=rank) for i in inputs], y, opts.FusedActivationFunction(),
              axis=axis)


def _convert_resize_bilinear(conv, op):
    g = conv.graph
    x, size = g.op_inputs(op)
    (y,) = g.op_outputs(op)
    opts = g.options(op, tflite.ResizeBilinearOptions)
    out_h, out_w = (int(v) for v in conv.constant(size).ravel())
    in_h, in_w = g.shape(x)[1:3]
    if opts.AlignCorners():
        mode = "align_corners"
    elif opts.HalfPixelCenters():
        mode = "half_pixel"
    else:
        mode = "asymmetric"
    # Scales rather than sizes: sizes would pin the batch dimension.
    scales = np.array([1.0, 1.0, out_h / in_h, out_w / in_w], np.float32)
    conv.emit("Resize", [conv.activation(x), "", conv.add_initializer(scales, f"{g.name(y)}_scales")], y,
              mode="linear", coordinate_transformation_mode=mode)


def _convert_depth_to_space(conv, op):
    g = conv.graph
    (x,), (y,) = g.op_inputs(op), g.op_outputs(op)
    # TensorFlow's channel order is ONNX's DCR mode.
    conv.emit("DepthToSpace", [conv.activation(x)], y,
              blocksize=g.options(op, tflite.DepthToSpaceOptions).BlockSize(), mode="DCR")


def _convert_dequantize(conv, op):
    g = conv.graph
    (x,), (y,) = g.op_inputs(op), g.op_outputs(op)
    if g.tensor(x).Quantization() is not None and g.tensor(x).Quantization().ScaleLength():
        raise ModelError(f"integer-quantized tensor {g.name(x)} is not supported (only fp16 weights)")
    if conv.is_constant(x):  # fp16 weights: fold to float32
        conv.constants[y] = conv.constant(x).astype(np.float32)
    else:
        conv.emit("Cast", [conv.activation(x)], y, to=TensorProto.FLOAT)


def _convert_densify(conv, op):
    g = conv.graph
    (x,), (y,) = g.op_inputs(op), g.op_outputs(op)
    conv.constants[y] = conv.constant(x)  # already expanded when the sparse constant was read


_HANDLERS = {
    "ADD": _convert_add,
    "CONCATENATION": _convert_concatenation,
    "CONV_2D": _convert_conv_2d,
    "DENSIFY": _convert_densify,
    "DEPTH_TO_SPACE": _convert_depth_to_space,
    "DEPTHWISE_CONV_2D": _convert_depthwise_conv_2d,
    "DEQUANTIZE": _convert_dequantize,
    "MAX_POOL_2D": _convert_max_pool_2d,
    "PAD": _convert_pad,
    "PRELU": _convert_prelu,
    "RELU": _convert_relu,
    "RESHAPE": _convert_reshape,
    "RESIZE_BILINEAR": _convert_resize_bilinear,
}


# --------------------------------------------------------------------------------------------------------------
# Fidelity checks against a TFLite interpreter (optional: tflite-runtime, ai-edge-litert or tensorflow)


def load_tflite_interpreter(tflite_path):
    """An allocated TFLite interpreter for ``tflite_path``, or None when no interpreter package is installed."""
    candidates = (("tflite_runtime.interpreter", "Interpreter"), ("ai_edge_litert.interpreter", "Interpreter"),
                  ("tensorflow.lite", "Interpreter"))
    for module_name, attribute in candidates:
        try:
            module = __import__(module_name, fromlist=[attribute])
        except ImportError:
            continue
        interpreter = getattr(module, attribute)(model_path=tflite_path)
        interpreter.allocate_tensors()
        return interpreter
    return None


def run_tflite(interpreter, nhwc_input):
    """Outputs of a single-input interpreter for one batch-1 NHWC input, in output order."""
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], np.ascontiguousarray(nhwc_input, np.float32))
    interpreter.invoke()
    return [interpreter.get_tensor(d["index"]).copy() for d in interpreter.get_output_details()]


def max_abs_differences(onnx_outputs, tflite_outputs):
    """Max |onnx - tflite| per output (ONNX outputs may be flattened views of the TFLite ones)."""
    return [float(np.abs(o - t.reshape(o.shape)).max()) for o, t in zip(onnx_outputs, tflite_outputs)]
