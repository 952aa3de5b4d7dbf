"""Read and write TFLite models through the official flatbuffer schema.

The schema code is the generated Python that ships with LiteRT (``ai_edge_litert``) and
TFLM (``tflite_micro``); we use its object API (``ModelT``) so that a model read and written
back keeps every field we do not model ourselves. Our own view of the graph is a handful
of dataclasses: `Model`, `Tensor`, `Operator`, `Quantization`.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

import flatbuffers
import numpy as np

from .errors import ModelError, UsageError

try:  # the maintained package first; TFLM ships the same generated code
    from ai_edge_litert import schema_py_generated as schema
except ImportError:  # pragma: no cover - depends on what is installed
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

FILE_IDENTIFIER = b"TFL3"
BUFFER_ALIGNMENT = 16  # what the TFLite converter uses; Vela and TFLM read weights in place

OPCODE_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
DTYPE_NAMES = {v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
DTYPE_CODES = {v: k for k, v in DTYPE_NAMES.items()}
ACTIVATION_NAMES = {
    v: k for k, v in vars(schema.ActivationFunctionType).items() if not k.startswith("_")
}
PADDING_NAMES = {v: k for k, v in vars(schema.Padding).items() if not k.startswith("_")}
OPTIONS_NAMES = {v: k for k, v in vars(schema.BuiltinOptions).items() if not k.startswith("_")}
# numpy dtypes of the tensor types whose buffers we turn into arrays
NUMPY_DTYPES = {
    "float32": np.float32, "float16": np.float16, "float64": np.float64,
    "int8": np.int8, "uint8": np.uint8, "int16": np.int16, "uint16": np.uint16,
    "int32": np.int32, "uint32": np.uint32, "int64": np.int64, "uint64": np.uint64,
    "bool": np.bool_,
}
# operators whose input 1 is a weight tensor with output channels along `axis`
WEIGHT_OPERATORS = {"CONV_2D": 0, "DEPTHWISE_CONV_2D": 3, "FULLY_CONNECTED": 0,
                    "TRANSPOSE_CONV": 0, "CONV_3D": 4}
MAX_RANK = 8


@dataclass
class Quantization:
    """Affine quantization `real = scale * (q - zero_point)`, per tensor or along `axis`."""

    scale: np.ndarray  # float32, one per channel (length 1 when per tensor)
    zero_point: np.ndarray  # int64, same length
    axis: int = 0

    @property
    def per_channel(self) -> bool:
        return self.scale.size > 1

    @property
    def granularity(self) -> str:
        return f"per-channel (axis {self.axis})" if self.per_channel else "per-tensor"


@dataclass
class Tensor:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str  # numpy-style name: "int8", "int32", "float32", ...
    buffer: int
    data: np.ndarray | None = None  # constant data, shaped, or None for activations
    quantization: Quantization | None = None
    is_variable: bool = False

    @property
    def is_constant(self) -> bool:
        return self.data is not None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    @property
    def nbytes(self) -> int:
        """Bytes of the tensor's values (size times the element size: 4 for int32 and float32)."""
        return self.size * np.dtype(self.dtype).itemsize


@dataclass
class Operator:
    index: int
    opcode: str  # builtin name, e.g. "CONV_2D"; "CUSTOM" for custom operators
    inputs: list[int]  # tensor indices; -1 marks an omitted optional input
    outputs: list[int]
    options: dict = field(default_factory=dict)  # snake_case option names, enums as names
    custom_code: str | None = None
    custom_options: bytes = b""

    @property
    def fused_activation(self) -> str:
        return self.options.get("fused_activation_function", "NONE")

    @property
    def name(self) -> str:
        return self.custom_code if self.opcode == "CUSTOM" and self.custom_code else self.opcode


@dataclass
class Model:
    """One subgraph of a TFLite model (edgepack deploys single-subgraph models)."""

    path: str
    sha256: str
    tensors: list[Tensor]
    operators: list[Operator]
    inputs: list[int]
    outputs: list[int]
    metadata: dict[str, bytes]
    description: str
    num_subgraphs: int
    fb: object = field(repr=False, default=None)  # schema.ModelT, kept for writing back

    def weight_tensors(self) -> list[tuple[Operator, Tensor]]:
        """(operator, weight tensor) pairs for operators that carry int weights."""
        pairs = []
        for op in self.operators:
            if op.opcode in WEIGHT_OPERATORS and len(op.inputs) > 1 and op.inputs[1] >= 0:
                t = self.tensors[op.inputs[1]]
                if t.is_constant:
                    pairs.append((op, t))
        return pairs

    def consumers(self, tensor_index: int) -> list[Operator]:
        return [op for op in self.operators if tensor_index in op.inputs]


# --- reading -------------------------------------------------------------------------------

def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def _options_dict(op_t) -> dict:
    opts = op_t.builtinOptions
    if opts is None:
        return {}
    out = {}
    for key, value in vars(opts).items():
        name = _snake(key)
        if name == "fused_activation_function":
            value = ACTIVATION_NAMES.get(value, str(value))
        elif name == "padding":
            value = PADDING_NAMES.get(value, str(value))
        elif isinstance(value, np.ndarray):
            value = value.tolist()
        out[name] = value
    return out


def _decode(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _check_vector_lengths(buf: bytes) -> None:
    """Reject vectors whose declared length cannot fit in the file before the object API
    walks them: a corrupted length would otherwise make it allocate or loop for a long time."""
    limit = len(buf)
    model = schema.Model.GetRootAs(buf, 0)
    counts = [model.SubgraphsLength(), model.BuffersLength(), model.OperatorCodesLength(),
              model.MetadataLength()]
    for i in range(min(model.SubgraphsLength(), limit // 4)):
        sg = model.Subgraphs(i)
        counts += [sg.TensorsLength(), sg.OperatorsLength(), sg.InputsLength(), sg.OutputsLength()]
        for j in range(min(sg.TensorsLength(), limit // 4)):
            t = sg.Tensors(j)
            counts += [t.ShapeLength(), t.ShapeSignatureLength()]
            q = t.Quantization()
            if q is not None:
                counts += [q.ScaleLength(), q.ZeroPointLength(), q.MinLength(), q.MaxLength()]
        for j in range(min(sg.OperatorsLength(), limit // 4)):
            o = sg.Operators(j)
            counts += [o.InputsLength(), o.OutputsLength(), o.CustomOptionsLength(),
                       o.IntermediatesLength()]
    for i in range(min(model.BuffersLength(), limit // 4)):
        counts.append(model.Buffers(i).DataLength())
    if any(c < 0 or c > limit for c in counts):
        raise ModelError("corrupt flatbuffer: a vector is longer than the file")


def _load_flatbuffer(buf: bytes, path: str):
    if len(buf) == 0:
        raise ModelError("empty file, not a TFLite model", path)
    if len(buf) < 8:
        raise ModelError(f"{len(buf)} bytes is too short to be a TFLite model", path)
    if buf[4:8] != FILE_IDENTIFIER:
        raise ModelError(
            f"not a TFLite model (file identifier {buf[4:8]!r}, expected {FILE_IDENTIFIER!r})", path)
    try:
        root = struct.unpack_from("<I", buf, 0)[0]
        if root >= len(buf):
            raise ModelError("truncated or corrupt: root table is outside the file", path)
        _check_vector_lengths(buf)
        return schema.ModelT.InitFromPackedBuf(buf, 0)
    except ModelError as err:
        if err.path is None:
            raise ModelError(str(err), path) from None
        raise
    except (struct.error, IndexError, ValueError, TypeError, OverflowError, AttributeError,
            KeyError, UnicodeDecodeError, RecursionError, MemoryError) as err:
        raise ModelError(f"truncated or corrupt flatbuffer ({type(err).__name__})", path) from None


def _quantization(q_t, tensor_name: str, path: str) -> Quantization | None:
    if q_t is None or q_t.scale is None or len(q_t.scale) == 0:
        return None
    scale = np.asarray(q_t.scale, dtype=np.float32).reshape(-1)
    zp = np.asarray(q_t.zeroPoint if q_t.zeroPoint is not None else [0], dtype=np.int64).reshape(-1)
    if zp.size == 0:
        zp = np.zeros(1, np.int64)
    if zp.size not in (1, scale.size):
        raise ModelError(f"tensor '{tensor_name}': {scale.size} scales but {zp.size} zero points", path)
    if zp.size != scale.size:
        zp = np.broadcast_to(zp, scale.shape).copy()
    return Quantization(scale=scale, zero_point=zp, axis=int(q_t.quantizedDimension))


def _buffer_bytes(buf_t, index: int, file_bytes: bytes, path: str) -> bytes | None:
    if buf_t is None:
        return None
    if buf_t.offset and buf_t.offset > 1:  # data stored after the flatbuffer (models > 2 GiB)
        end = buf_t.offset + buf_t.size
        if end > len(file_bytes):
            raise ModelError(
                f"buffer {index} points outside the file (bytes {buf_t.offset}..{end}, "
                f"file has {len(file_bytes)})", path)
        return file_bytes[buf_t.offset:end]
    if buf_t.data is None or len(buf_t.data) == 0:
        return None
    data = buf_t.data
    return data.tobytes() if isinstance(data, np.ndarray) else bytes(data)


def _user_of(fb, sg, tensor: int) -> str:
    """'operator k (NAME): ' for the first operator using `tensor`, to lead a tensor's error
    with (an LSTM's odd constant is the LSTM's problem), or ''."""
    codes = fb.operatorCodes or []
    for k, o in enumerate(sg.operators or []):
        used = list(o.inputs if o.inputs is not None else []) + \
            list(o.outputs if o.outputs is not None else [])
        if tensor in used and 0 <= o.opcodeIndex < len(codes):
            code = codes[o.opcodeIndex]
            builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
            name = OPCODE_NAMES.get(builtin, f"BUILTIN_{builtin}")
            if name == "CUSTOM" and code.customCode:
                name = _decode(code.customCode)
            return f"operator {k} ({name}): "
    return ""


def parse_model(buf: bytes, path: str = "<model>") -> Model:
    """Parse TFLite flatbuffer bytes into a `Model`; raises `ModelError` on anything malformed."""
    fb = _load_flatbuffer(buf, path)
    if not fb.subgraphs:
        raise ModelError("the model has no subgraph", path)
    sg = fb.subgraphs[0]
    buffers = fb.buffers or []
    tensors: list[Tensor] = []
    for i, t in enumerate(sg.tensors or []):
        name = _decode(t.name)

        def bad(problem: str, i=i, name=name) -> ModelError:
            return ModelError(f"{_user_of(fb, sg, i)}tensor {i} '{name}'{problem}", path)

        shape = tuple(int(d) for d in (t.shape if t.shape is not None else []))
        if len(shape) > MAX_RANK or any(d < 0 for d in shape):
            raise bad(f" has an invalid shape {list(shape)}")
        dtype = DTYPE_NAMES.get(t.type)
        if dtype is None:
            raise bad(f" has an unknown type code {t.type}")
        if not 0 <= t.buffer < max(len(buffers), 1):
            raise bad(f" refers to buffer {t.buffer}, the model has {len(buffers)}")
        raw = _buffer_bytes(buffers[t.buffer], t.buffer, buf, path) if buffers else None
        data = None
        if raw is not None and dtype in NUMPY_DTYPES:
            count = math.prod(shape)  # Python integers: no wrap-around on corrupt dimensions
            itemsize = np.dtype(NUMPY_DTYPES[dtype]).itemsize
            if count * itemsize != len(raw):
                raise bad(f" of shape {list(shape)} ({dtype}) needs {count * itemsize} bytes but "
                          f"its buffer {t.buffer} holds {len(raw)}")
            data = np.frombuffer(raw, dtype=NUMPY_DTYPES[dtype]).reshape(shape).copy()
        q_t = t.quantization
        if q_t is not None and q_t.scale is not None and q_t.zeroPoint is not None \
                and len(q_t.zeroPoint) not in (0, 1, len(q_t.scale)):
            raise bad(f": {len(q_t.scale)} scales but {len(q_t.zeroPoint)} zero points")
        quant = _quantization(q_t, name, path)
        if quant is not None and quant.per_channel:
            if len(shape) == 1 and shape[0] == quant.scale.size:
                # a 1-D tensor has one axis whatever quantized_dimension says: TFLM reads the
                # scales in order (the person-detection model's biases carry dimension 3)
                quant.axis = 0
            if not 0 <= quant.axis < max(len(shape), 1) or (shape and shape[quant.axis] != quant.scale.size):
                raise bad(f": {quant.scale.size} scales do not match axis {quant.axis} of shape "
                          f"{list(shape)}")
        tensors.append(Tensor(i, name, shape, dtype, int(t.buffer), data, quant, bool(t.isVariable)))

    codes = fb.operatorCodes or []
    operators: list[Operator] = []
    for i, o in enumerate(sg.operators or []):
        if not 0 <= o.opcodeIndex < len(codes):
            raise ModelError(f"operator {i} refers to operator code {o.opcodeIndex}, "
                             f"the model has {len(codes)}", path)
        code = codes[o.opcodeIndex]
        builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
        opcode = OPCODE_NAMES.get(builtin, f"BUILTIN_{builtin}")
        inputs = [int(x) for x in (o.inputs if o.inputs is not None else [])]
        outputs = [int(x) for x in (o.outputs if o.outputs is not None else [])]
        for idx in inputs + outputs:
            if not -1 <= idx < len(tensors):
                raise ModelError(f"operator {i} ({opcode}) refers to tensor {idx}, "
                                 f"the model has {len(tensors)}", path)
        custom = o.customOptions
        operators.append(Operator(
            i, opcode, inputs, outputs, _options_dict(o),
            custom_code=_decode(code.customCode) or None,
            custom_options=bytes(np.asarray(custom, dtype=np.uint8)) if custom is not None else b""))

    io = [int(x) for x in (sg.inputs if sg.inputs is not None else [])]
    oo = [int(x) for x in (sg.outputs if sg.outputs is not None else [])]
    for idx in io + oo:
        if not 0 <= idx < len(tensors):
            raise ModelError(f"subgraph input/output refers to tensor {idx}, "
                             f"the model has {len(tensors)}", path)
    metadata = {}
    for m in fb.metadata or []:
        if 0 <= m.buffer < len(buffers):
            metadata[_decode(m.name)] = _buffer_bytes(buffers[m.buffer], m.buffer, buf, path) or b""
    return Model(path=path, sha256=hashlib.sha256(buf).hexdigest(), tensors=tensors,
                 operators=operators, inputs=io, outputs=oo, metadata=metadata,
                 description=_decode(fb.description), num_subgraphs=len(fb.subgraphs), fb=fb)


def read_model(path: str | os.PathLike) -> Model:
    """Read a `.tflite` file. Usage problems (missing, a directory) raise `UsageError`."""
    p = Path(path)
    if not p.exists():
        raise UsageError("no such file", str(path))
    if p.is_dir():
        raise UsageError("is a directory, expected a .tflite file", str(path))
    try:
        buf = p.read_bytes()
    except OSError as err:
        raise UsageError(f"cannot read: {err.strerror}", str(path)) from None
    return parse_model(buf, str(path))


# --- checks of what edgepack supports --------------------------------------------------------

def float_io_tensors(model: Model) -> set[int]:
    """The float32 model inputs that only QUANTIZE operators read, and the float32 model outputs
    a DEQUANTIZE writes: the TFLite converter's float I/O around an int8 graph, which the runtime
    runs (QUANTIZE float32 -> int8 first, DEQUANTIZE int8 -> float32 last)."""
    readers: dict[int, set[str]] = {}
    writer: dict[int, str] = {}
    for op in model.operators:
        for i in op.inputs:
            readers.setdefault(i, set()).add(op.opcode)
        for o in op.outputs:
            writer[o] = op.opcode
    out = {i for i in model.inputs if model.tensors[i].dtype == "float32" and readers.get(i) == {"QUANTIZE"}}
    out |= {o for o in model.outputs if model.tensors[o].dtype == "float32" and writer.get(o) == "DEQUANTIZE"}
    return out


def check_int8(model: Model) -> None:
    """Refuse models edgepack cannot deploy: float or int16 activations (float I/O around an
    int8 graph excepted, see float_io_tensors)."""
    float_io = float_io_tensors(model)
    for idx in model.inputs + model.outputs:
        t = model.tensors[idx]
        if idx in float_io:
            continue
        if t.dtype in ("float32", "float16", "float64"):
            raise ModelError(f"{t.dtype} model ({_io_label(model, idx)}); edgepack needs a fully "
                             "int8-quantized model (TFLiteConverter with "
                             "inference_input_type=tf.int8)", model.path)
        if t.dtype == "int16":
            raise ModelError(f"int16-activation model ({_io_label(model, idx)}); edgepack "
                             "supports int8 activations only", model.path)
    for op in model.operators:
        for idx in op.inputs + op.outputs:
            if idx < 0:
                continue
            t = model.tensors[idx]
            if t.is_constant or idx in float_io:
                continue
            if t.dtype in ("float32", "float16", "float64"):
                raise ModelError(f"float activations at operator {op.index} ({op.name}, "
                                 f"{_tensor_label(t)}); edgepack needs a fully int8-quantized "
                                 "model", model.path)
            if t.dtype == "int16":
                raise ModelError(f"int16 activations at operator {op.index} ({op.name}, "
                                 f"{_tensor_label(t)}); edgepack supports int8 activations only",
                                 model.path)


def _tensor_label(t: Tensor) -> str:
    return f"tensor {t.index} '{t.name}'" if t.name else f"tensor {t.index}"


def _io_label(model: Model, idx: int) -> str:
    """A graph input or output for people: its name (or index) and the operator using it."""
    t = model.tensors[idx]
    role = "input" if idx in model.inputs else "output"
    user = next((op for op in model.operators if idx in (op.inputs if role == "input"
                                                        else op.outputs)), None)
    by = f", {'read' if role == 'input' else 'written'} by operator {user.index} ({user.name})" \
        if user is not None else ""
    return f"{role} {_tensor_label(t)}{by}"


# --- writing -------------------------------------------------------------------------------

class _AlignedBufferT(schema.BufferT):
    """A buffer whose data vector starts on a 16-byte boundary, as the converter writes it."""

    def Pack(self, builder):
        data = None
        if self.data is not None and len(self.data):
            raw = np.ascontiguousarray(self.data, dtype=np.uint8)
            builder.StartVector(1, raw.size, BUFFER_ALIGNMENT)
            builder.head = builder.head - raw.size
            builder.Bytes[builder.head:builder.head + raw.size] = raw.tobytes()
            data = builder.EndVector()
        schema.BufferStart(builder)
        if data is not None:
            schema.BufferAddData(builder, data)
        if self.offset:
            schema.BufferAddOffset(builder, self.offset)
        if self.size:
            schema.BufferAddSize(builder, self.size)
        return schema.BufferEnd(builder)


def _sync_tensor(fb, t: Tensor) -> None:
    """Write a `Tensor`'s data and quantization back into the object-API model."""
    sg = fb.subgraphs[0]
    t_fb = sg.tensors[t.index]
    t_fb.shape = np.asarray(t.shape, dtype=np.int32)
    t_fb.type = DTYPE_CODES[t.dtype]
    if t.data is not None:
        if t.buffer == 0:  # buffer 0 is the shared empty buffer: give the tensor its own
            fb.buffers.append(schema.BufferT())
            t.buffer = len(fb.buffers) - 1
            t_fb.buffer = t.buffer
        buf = fb.buffers[t.buffer]
        buf.data = np.frombuffer(np.ascontiguousarray(t.data, dtype=NUMPY_DTYPES[t.dtype]).tobytes(),
                                 dtype=np.uint8)
        buf.offset = 0
        buf.size = 0
    if t.quantization is not None:
        q = t_fb.quantization or schema.QuantizationParametersT()
        q.scale = np.asarray(t.quantization.scale, dtype=np.float32)
        q.zeroPoint = np.asarray(t.quantization.zero_point, dtype=np.int64)
        q.quantizedDimension = int(t.quantization.axis)
        q.min = None
        q.max = None
        t_fb.quantization = q


def serialize_model(model: Model) -> bytes:
    """The model as TFLite flatbuffer bytes, with our tensors' data and quantization applied."""
    fb = model.fb
    for t in model.tensors:
        _sync_tensor(fb, t)
    fb.buffers = [_as_aligned(b) for b in fb.buffers]
    builder = flatbuffers.Builder(1024 + sum(len(b.data) if b.data is not None else 0
                                             for b in fb.buffers))
    builder.Finish(fb.Pack(builder), file_identifier=FILE_IDENTIFIER)
    return bytes(builder.Output())


def _as_aligned(buf_t):
    if isinstance(buf_t, _AlignedBufferT):
        return buf_t
    out = _AlignedBufferT()
    out.data, out.offset, out.size = buf_t.data, buf_t.offset, buf_t.size
    return out


def write_model(model: Model, path: str | os.PathLike) -> bytes:
    """Serialize and write atomically (temporary file, then rename); returns the bytes."""
    data = serialize_model(model)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return data
