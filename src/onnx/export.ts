// Writing an ONNX file back with new values for some of its float32 or float16 tensors (merged IA3
// weights).
//
// The original file is decoded again with onnx-proto (protobufjs), the named tensors get their new
// values in the dtype and storage they had (raw_data, float_data, float16 bits in int32_data, a
// Constant node's `value` tensor, or their bytes in an external data file at the same location,
// offset and length), and the message is
// encoded again: same graph, same node list, same input and output names. Nothing the loader
// derived (folded Constants, the IR) is written; every name must be a tensor of the original file,
// else the export is refused rather than writing a file that differs in an unexpected way.

import { onnx } from 'onnx-proto';
import { FormatError, InputError } from '../errors.js';
import { floatToHalf } from '../ir/dtype.js';
import { sizeOf } from '../ir/tensor.js';
import { normLocation } from '../io/location.js';

/** An ONNX file and its external data files (by the location its tensors name). */
export interface OnnxWithExternalData {
  readonly onnx: Uint8Array;
  /** Present when the model keeps tensors in external files: every such file, by location. */
  readonly externalData?: Record<string, Uint8Array>;
}

/** The ONNX file a model was decoded from (the source of `rewriteOnnxTensors`): the bytes `loadModel` read. */
export interface OnnxSourceFile {
  /** The .onnx bytes as read (the graph's weights may be views into them; never modified). */
  readonly bytes: Uint8Array;
  /** File name used in error messages. */
  readonly fileName: string;
  /** External data files by the location the tensors name. */
  readonly externalData: Readonly<Record<string, Uint8Array>>;
}

/** The newest ONNX IR version onnx-proto's schema re-encodes without loss (see `rewriteOnnxTensors`). */
export const MAX_IR_VERSION = 9;

function num(v: number | { toNumber(): number } | null | undefined): number {
  return v === null || v === undefined ? 0 : typeof v === 'number' ? v : v.toNumber();
}

/** Little-endian bytes of `values` as float32, or as the nearest halves' bits for float16 (a fresh buffer). */
function tensorBytes(values: Float32Array, half: boolean): Uint8Array {
  const out = new Uint8Array(values.length * (half ? 2 : 4));
  const view = new DataView(out.buffer);
  for (let i = 0; i < values.length; i++) {
    if (half) view.setUint16(i * 2, floatToHalf(values[i]!), true);
    else view.setFloat32(i * 4, values[i]!, true);
  }
  return out;
}

/**
 * The file with the named float32 or float16 tensors (initializers, or Constant nodes' outputs)
 * replaced by `values` (a float16 tensor gets each value's nearest half: exact for values that are
 * halves already, as merged float16 weights are). Throws InputError when a name is not such a
 * tensor of the file or a size differs, FormatError when the file cannot be read back or would
 * lose fields this encoder does not know.
 */
export function rewriteOnnxTensors(file: OnnxSourceFile, values: ReadonlyMap<string, Float32Array>): OnnxWithExternalData {
  let proto: onnx.ModelProto;
  try {
    proto = onnx.ModelProto.decode(file.bytes);
  } catch (e) {
    throw new FormatError(file.fileName, `cannot decode the original model again (${e instanceof Error ? e.message : String(e)})`);
  }
  // protobufjs drops fields its schema lacks. onnx-proto's schema is ONNX IR 8; IR 9 added only
  // enum values (float8 types), IR 10 added message fields (metadata_props, overload) that a
  // re-encoded file would lose. (Comparing sizes cannot tell: protobufjs writes repeated scalars
  // packed where ONNX's C++ writer does not, so a faithful re-encoding differs in size.)
  const ir = num(proto.irVersion);
  if (ir > MAX_IR_VERSION) {
    throw new FormatError(
      file.fileName,
      `the model is ONNX IR version ${ir}; re-encoding it with onnx-proto (IR ${MAX_IR_VERSION} and older) could drop fields newer IR versions added, so it is not rewritten`,
    );
  }
  const graph = proto.graph!;
  const tensors = new Map<string, onnx.ITensorProto>();
  for (const t of graph.initializer ?? []) tensors.set(t.name ?? '', t);
  for (const n of graph.node ?? []) {
    if (n.opType !== 'Constant' || (n.domain && n.domain !== 'ai.onnx')) continue;
    const value = (n.attribute ?? []).find((a) => a.name === 'value' && a.t);
    if (value?.t && n.output?.[0] && !tensors.has(n.output[0])) tensors.set(n.output[0], value.t);
  }

  const external: Record<string, Uint8Array> = {};
  const copied = new Set<string>();
  for (const [name, data] of values) {
    const t = tensors.get(name);
    if (!t) throw new InputError(`cannot write '${name}': the original file has no initializer or Constant tensor of that name`);
    const half = t.dataType === onnx.TensorProto.DataType.FLOAT16;
    if (t.dataType !== onnx.TensorProto.DataType.FLOAT && !half) {
      throw new InputError(`cannot write '${name}': it is stored as ONNX data type ${t.dataType ?? 0}, not float32 or float16`);
    }
    const bytes = half ? 2 : 4;
    const dims = (t.dims ?? []).map(num);
    if (sizeOf(dims) !== data.length) {
      throw new InputError(`cannot write '${name}': ${data.length} values for its shape [${dims.join(', ')}]`);
    }
    if (t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL) {
      const kv = new Map((t.externalData ?? []).map((e) => [e.key ?? '', e.value ?? '']));
      const location = normLocation(kv.get('location') ?? '');
      const source = file.externalData[location];
      if (!source) throw new InputError(`cannot write '${name}': its external data file '${location}' was not kept at load`);
      const offset = Number(kv.get('offset') ?? '0');
      const length = Number(kv.get('length') ?? String(data.length * bytes));
      if (!Number.isSafeInteger(offset) || length !== data.length * bytes || offset < 0 || offset + length > source.length) {
        throw new FormatError(location, `tensor '${name}' needs bytes ${offset}..${offset + length} of ${source.length}`, offset);
      }
      if (!copied.has(location)) {
        external[location] = source.slice();
        copied.add(location);
      }
      external[location]!.set(tensorBytes(data, half), offset);
    } else if (t.rawData && t.rawData.length > 0) {
      t.rawData = tensorBytes(data, half);
    } else if (half) {
      t.int32Data = Array.from(data, floatToHalf); // ONNX keeps typed float16 values as their bits in int32_data
    } else {
      t.floatData = Array.from(data);
    }
  }
  const bytes = onnx.ModelProto.encode(proto).finish();
  const out: OnnxWithExternalData = { onnx: new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength) };
  const locations = Object.keys(file.externalData);
  if (locations.length === 0) return out;
  const all: Record<string, Uint8Array> = {};
  for (const loc of locations) all[loc] = external[loc] ?? file.externalData[loc]!;
  return { ...out, externalData: all };
}
