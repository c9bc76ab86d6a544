// ONNX bytes → Graph, strictly.
//
// Decoding is two-phase so a loader can fetch external weights only once it knows their names:
// `parseModel` runs the protobuf decoder (onnx-proto's generated static code) and the structural
// checks, `externalDataRefs` lists the external files the initializers name, and `buildGraph`
// turns the message into the IR with every tensor checked against its declared size.
//
// Every malformed input is a typed error: FormatError with the byte offset for a truncated or
// corrupt file (protobufjs' errors carry the reader position), a size mismatch, an
// out-of-range external reference or an unknown dtype (naming the tensor); InputError for an
// external file that was not provided; one UnsupportedOpError listing every op type the registry
// lacks, or an ai.onnx opset outside 7..21.
//
// Tensor bytes are used in place: raw_data is a subarray of the file, and a typed view over it is
// taken whenever its offset is aligned (little-endian hosts, as every WebGPU platform is).
//
// Size: the whole protobuf → IR mapping of an untrusted file, every field with its bound and typed
// error, reads best in one place.

import { onnx } from 'onnx-proto';
import { FormatError, InputError, UnsupportedOpError, warn } from '../errors.js';
import { normLocation, relativeLocation } from '../io/location.js';
import { halfToFloat, DTYPES, dtypeFromOnnx, onnxTypeName, type DataType, type WeightStorage } from '../ir/dtype.js';
import { initializerToRef, normDomain, topoSort, uniqueNodeNames, type AttrValue, type Attrs, type Dim, type Graph, type Initializer, type InitializerData, type InputDecl, type Node, type ValueDecl } from '../ir/graph.js';
import { sizeOf } from '../ir/tensor.js';
import { resolveOp } from '../ops/registry.js';
import { expandGraph } from './expand.js';
import { packFrozenWeights } from './precision.js';

/** The ai.onnx opsets whose semantics the registry implements. */
export const MIN_OPSET = 7;
export const MAX_OPSET = 21;

/** Ops the importer itself handles: folded on load (Constant) or dropped by the specialiser. */
export const IMPORTER_OPS: ReadonlySet<string> = new Set(['Constant', 'Identity', 'Dropout']);

type Long = number | { toNumber(): number; readonly low: number; readonly high: number } | null | undefined;

/** An int64 field as a number: exact up to 2^53, the nearest double beyond (sizes, counts, attributes). */
const toNum = (v: Long): number => (v == null ? 0 : typeof v === 'number' ? v : v.toNumber());

const INT64_MAX = (1n << 63n) - 1n;
const INT64_MIN = -(1n << 63n);

/**
 * An int64 field as an exact BigInt, for int64 tensor values. protobufjs hands out a Long (two 32-bit
 * halves) where the `long` package is present, else a number already rounded to a double. Going
 * through `toNumber()` would round INT64_MAX (the "slice to the end" sentinel) up to 2^63, which
 * BigInt64Array then wraps to INT64_MIN; a rounded number is clamped to the int64 range instead.
 */
export function toBigInt64(v: Long): bigint {
  if (v == null) return 0n;
  if (typeof v !== 'number') return (BigInt(v.high) << 32n) | BigInt(v.low >>> 0);
  if (!Number.isFinite(v)) return v > 0 ? INT64_MAX : INT64_MIN;
  const b = BigInt(Math.trunc(v));
  return b > INT64_MAX ? INT64_MAX : b < INT64_MIN ? INT64_MIN : b;
}

function dtypeOf(code: number, what: string, file: string): DataType {
  const t = dtypeFromOnnx(code);
  if (!t) {
    throw new FormatError(file, `${what} has data type ${code} (${onnxTypeName(code)}), which the toolkit does not support`);
  }
  return t;
}

/** A decoded ModelProto with the bytes it views. */
export interface ParsedModel {
  readonly proto: onnx.ModelProto;
  readonly bytes: Uint8Array;
  readonly file: string;
}

/** An external data reference of a tensor. */
export interface ExternalDataRef {
  readonly tensor: string;
  readonly location: string;
}

export interface DecodeOptions {
  /** Name used in error messages (default 'model.onnx'). */
  readonly fileName?: string;
  /** External data files by `location` (as written in the model, e.g. 'model.onnx_data'). */
  readonly externalData?: Readonly<Record<string, Uint8Array>>;
  /**
   * Build the graph even when it uses ops the registry lacks (for inspection: describeGraph,
   * module paths). Such a graph cannot be specialised.
   */
  readonly allowUnsupported?: boolean;
}

/** Decodes the protobuf and checks the model's frame: IR version, graph, opsets. */
export function parseModel(bytes: Uint8Array, fileName = 'model.onnx'): ParsedModel {
  let proto: onnx.ModelProto;
  try {
    // Bytes, not a Reader of our own: a bundler may give onnx-proto its own copy of protobufjs,
    // whose decode rejects another copy's Reader. The errors carry the positions instead.
    proto = onnx.ModelProto.decode(bytes);
  } catch (e) {
    throw protobufError(e, bytes.length, fileName);
  }
  return { ...checkModel(proto, fileName), bytes };
}

/** Checks a decoded model's frame (IR version, graph, opsets); the result has no file bytes. */
export function checkModel(proto: onnx.ModelProto, fileName: string): Omit<ParsedModel, 'bytes'> {
  if (toNum(proto.irVersion) <= 0) throw new FormatError(fileName, 'not an ONNX model: ir_version is missing');
  if (!proto.graph) throw new FormatError(fileName, 'not an ONNX model: it has no graph');
  if (proto.opsetImport.length === 0) throw new FormatError(fileName, 'the model declares no opset_import');
  const opset = proto.opsetImport.find((o) => normDomain(o.domain) === '');
  if (opset) {
    const v = toNum(opset.version);
    if (v < MIN_OPSET || v > MAX_OPSET) {
      throw new UnsupportedOpError(
        'ai.onnx',
        fileName,
        `the model imports ai.onnx opset ${v}; the toolkit implements opsets ${MIN_OPSET} to ${MAX_OPSET}`,
        v,
      );
    }
  }
  return { proto, file: fileName };
}

function protobufError(e: unknown, length: number, file: string): FormatError {
  const msg = e instanceof Error ? e.message : String(e);
  const range = /index out of range: (\d+) \+ (\d+) > (\d+)/.exec(msg);
  if (range) {
    const at = Number(range[1]);
    return new FormatError(
      file,
      `truncated or corrupt protobuf: a field needs ${range[2]} more bytes, but the data ends at byte ${range[3]}`,
      at,
    );
  }
  const at = /at offset (\d+)/.exec(msg); // invalid wire types; a bad varint has no position
  return new FormatError(file, `corrupt protobuf (${msg}; ${length} bytes in all)`, at ? Number(at[1]) : undefined);
}

/** The external files the model's initializers (and Constant tensors) read, without duplicates. */
export function externalDataRefs(parsed: ParsedModel): ExternalDataRef[] {
  const out: ExternalDataRef[] = [];
  const seen = new Set<string>();
  const visit = (t: onnx.ITensorProto): void => {
    if (t.dataLocation !== onnx.TensorProto.DataLocation.EXTERNAL) return;
    const location = externalEntries(t, parsed.file).location;
    if (!seen.has(location)) {
      seen.add(location);
      out.push({ tensor: t.name ?? '', location });
    }
  };
  // If branches keep initializers and Constant tensors of their own.
  const walk = (g: onnx.IGraphProto, depth: number): void => {
    if (depth > MAX_BRANCH_DEPTH) return; // buildGraph refuses the file
    for (const t of g.initializer ?? []) visit(t);
    for (const n of g.node ?? []) {
      for (const a of n.attribute ?? []) {
        if (a.t) visit(a.t);
        if (a.g) walk(a.g, depth + 1);
      }
    }
  };
  walk(parsed.proto.graph!, 0);
  return out;
}

/** Decodes bytes into a Graph (parseModel + buildGraph). */
export function decodeOnnx(bytes: Uint8Array | ArrayBuffer, options: DecodeOptions = {}): Graph {
  const u8 = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  return buildGraph(parseModel(u8, options.fileName), options.externalData ?? {}, options);
}

/** A tensor's external data entries, checked: location (io/location.ts's rule), and offset and length as byte counts. */
export function externalEntries(t: onnx.ITensorProto, file: string): { location: string; offset?: number; length?: number } {
  const kv = new Map((t.externalData ?? []).map((e) => [e.key ?? '', e.value ?? '']));
  const raw = kv.get('location');
  if (!raw) throw new FormatError(file, `tensor '${t.name}' has external data without a location`);
  // The one rule for every loader (io/location.ts): locations stay inside the model's folder.
  const rel = relativeLocation(raw);
  if ('problem' in rel) {
    throw new FormatError(file, `tensor '${t.name}': external data location '${raw}' ${rel.problem}; ONNX locations are paths inside the model file's folder`);
  }
  const location = rel.path;
  const num = (key: string): number | undefined => {
    const s = kv.get(key);
    if (s === undefined) return undefined;
    const v = Number(s);
    if (!/^\d+$/.test(s.trim()) || !Number.isSafeInteger(v)) {
      throw new FormatError(file, `tensor '${t.name}' has external data ${key} '${s}', which is not a byte count`);
    }
    return v;
  };
  return { location, offset: num('offset'), length: num('length') };
}

interface TensorContext {
  readonly file: string;
  readonly bytes: Uint8Array;
  readonly external: ReadonlyMap<string, Uint8Array>;
  /** Tensors whose data went elsewhere as the file streamed (the GPU): their bytes. */
  readonly streamed?: ReadonlyMap<onnx.ITensorProto, number>;
  /** How a streamed tensor is stored there when not as f32 (TensorSink.storage). */
  readonly streamedStorage?: (name: string) => WeightStorage | undefined;
  /** External data read per tensor (a streamed load keeps no whole external file). */
  readonly externalTensors?: ReadonlyMap<onnx.ITensorProto, Uint8Array>;
}

/** Options of buildGraph. */
export interface BuildOptions {
  readonly allowUnsupported?: boolean;
  /** See TensorContext. */
  readonly streamed?: ReadonlyMap<onnx.ITensorProto, number>;
  readonly streamedStorage?: (name: string) => WeightStorage | undefined;
  readonly externalTensors?: ReadonlyMap<onnx.ITensorProto, Uint8Array>;
}

/** A typed array over `n` elements of `dtype` stored little-endian in `src` (a view when aligned). */
function typedFromBytes(dtype: DataType, src: Uint8Array, n: number): InitializerData {
  const size = DTYPES[dtype].bytes;
  let buf = src;
  if (src.byteOffset % size !== 0) {
    // Not Uint8Array.slice: on a Node Buffer that is a view, still unaligned.
    buf = new Uint8Array(src.length);
    buf.set(src);
  }
  switch (dtype) {
    case 'float32':
      return new Float32Array(buf.buffer, buf.byteOffset, n);
    case 'float64':
      return new Float64Array(buf.buffer, buf.byteOffset, n);
    case 'int64':
      return new BigInt64Array(buf.buffer, buf.byteOffset, n);
    case 'int32':
      return new Int32Array(buf.buffer, buf.byteOffset, n);
    case 'int8':
      return new Int8Array(src.buffer, src.byteOffset, n);
    case 'uint8':
    case 'bool':
      return src.subarray(0, n);
    case 'float16': {
      const half = new Uint16Array(buf.buffer, buf.byteOffset, n);
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = halfToFloat(half[i]!);
      return out;
    }
  }
}

const UINT4 = 21;
const INT4 = 22;

/**
 * A 4-bit tensor (ONNX `UINT4` / `INT4`, two elements per byte) as the uint8 pairs it is stored in
 * (see `Initializer.int4`); the last dim must be even, so each row's pairs are its own bytes.
 */
function decodeInt4(t: onnx.ITensorProto, ctx: TensorContext, name: string): Initializer {
  const kind = t.dataType === INT4 ? 'int4' : 'uint4';
  const dims = (t.dims ?? []).map(toNum);
  const last = dims[dims.length - 1];
  if (last === undefined || last % 2 !== 0 || !t.rawData || t.rawData.length === 0) {
    throw new FormatError(ctx.file, `tensor '${name}' (${kind.toUpperCase()} [${dims.join(',')}]): 4-bit tensors are read from raw_data with an even last dim`);
  }
  const pairs = decodeTensor({ ...t, dataType: onnx.TensorProto.DataType.UINT8, dims: [...dims.slice(0, -1), last / 2] }, ctx, name);
  // INT4 codes −8..7 become 0..15 with a zero point of 8: flip each nibble's sign bit (a copy: the
  // data is a view of the file).
  const data = kind === 'int4' ? (pairs.data as Uint8Array).map((b) => b ^ 0x88) : pairs.data;
  return { ...pairs, data, int4: kind };
}

/** Decodes a TensorProto (initializer or attribute) to an Initializer, checking every size. */
function decodeTensor(t: onnx.ITensorProto, ctx: TensorContext, name = t.name ?? ''): Initializer {
  if (t.dataType === INT4 || t.dataType === UINT4) return decodeInt4(t, ctx, name);
  const what = `tensor '${name}'`;
  const dtype = dtypeOf(t.dataType ?? 0, what, ctx.file);
  const dims = (t.dims ?? []).map(toNum);
  for (const d of dims) {
    if (!Number.isSafeInteger(d) || d < 0) throw new FormatError(ctx.file, `${what} has an invalid dim ${d} in [${dims.join(',')}]`);
  }
  const n = sizeOf(dims);
  const bytesNeeded = n * DTYPES[dtype].bytes;
  const streamed = ctx.streamed?.get(t);
  const ext = t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL ? externalEntries(t, ctx.file) : undefined;
  const external = ext ? { external: { location: ext.location, offset: ext.offset ?? 0, length: ext.length ?? bytesNeeded } } : {};
  if (streamed !== undefined) {
    if (streamed !== bytesNeeded) {
      throw new FormatError(ext?.location ?? ctx.file, `${what} has ${streamed} bytes of data, but ${dtype} [${dims.join(',')}] needs ${bytesNeeded}`, ext?.offset);
    }
    const storage = ctx.streamedStorage?.(name);
    return { name, dtype, dims, ...external, ...(storage ? { storage } : {}) };
  }
  const own = ctx.externalTensors?.get(t);
  if (own) {
    if (own.length !== bytesNeeded) {
      throw new FormatError(ext!.location, `${what} has ${own.length} bytes of external data, but ${dtype} [${dims.join(',')}] needs ${bytesNeeded}`, ext!.offset);
    }
    return { name, dtype, dims, data: typedFromBytes(dtype, own, n), ...external };
  }
  if (t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL) {
    const ref = externalEntries(t, ctx.file);
    const file = ctx.external.get(ref.location);
    if (!file) {
      throw new InputError(
        `${what} of ${ctx.file} stores its data in the external file '${ref.location}', which was not provided ` +
          `(keep it next to the model, or pass it in options.externalData['${ref.location}'])`,
      );
    }
    const offset = ref.offset ?? 0;
    const length = ref.length ?? bytesNeeded;
    if (offset + length > file.length) {
      throw new FormatError(
        ref.location,
        `${what} needs bytes ${offset}..${offset + length} but the file has ${file.length} bytes`,
        offset,
      );
    }
    if (length !== bytesNeeded) {
      throw new FormatError(
        ref.location,
        `${what} has ${length} bytes of external data, but ${dtype} [${dims.join(',')}] needs ${bytesNeeded}`,
        offset,
      );
    }
    const data = typedFromBytes(dtype, file.subarray(offset, offset + length), n);
    return { name, dtype, dims, data, external: { location: ref.location, offset, length } };
  }
  if (Object.prototype.hasOwnProperty.call(t, 'rawData') && t.rawData) {
    const raw = t.rawData;
    if (raw.length !== bytesNeeded) {
      const at = raw.buffer === ctx.bytes.buffer ? raw.byteOffset - ctx.bytes.byteOffset : undefined;
      throw new FormatError(
        ctx.file,
        `${what} has ${raw.length} bytes of raw_data, but ${dtype} [${dims.join(',')}] needs ${bytesNeeded}`,
        at,
      );
    }
    return { name, dtype, dims, data: typedFromBytes(dtype, raw, n) };
  }
  // Typed repeated fields (small tensors, old exporters). float16 travels as uint16 bits in int32_data.
  const field = (values: ArrayLike<number | Long> | null | undefined, fieldName: string): ArrayLike<number | Long> => {
    const v = values ?? [];
    if (v.length !== n) {
      throw new FormatError(ctx.file, `${what} has ${v.length} values in ${fieldName}, but [${dims.join(',')}] has ${n} elements`);
    }
    return v;
  };
  const hasAny = [t.floatData, t.int32Data, t.int64Data, t.doubleData, t.uint64Data].some((v) => v && v.length > 0);
  if (!hasAny) {
    if (n === 0) return { name, dtype, dims, data: typedFromBytes(dtype, new Uint8Array(8), 0) };
    throw new FormatError(ctx.file, `${what} (${dtype} [${dims.join(',')}]) has no data`);
  }
  let data: InitializerData;
  switch (dtype) {
    case 'float32':
      data = Float32Array.from(field(t.floatData, 'float_data') as ArrayLike<number>);
      break;
    case 'float64':
      data = Float64Array.from(field(t.doubleData, 'double_data') as ArrayLike<number>);
      break;
    case 'int64': {
      const v = field(t.int64Data, 'int64_data');
      data = BigInt64Array.from({ length: n }, (_, i) => toBigInt64(v[i] as Long));
      break;
    }
    case 'int32':
      data = Int32Array.from(field(t.int32Data, 'int32_data') as ArrayLike<number>);
      break;
    case 'int8':
      data = Int8Array.from(field(t.int32Data, 'int32_data') as ArrayLike<number>);
      break;
    case 'uint8':
    case 'bool':
      data = Uint8Array.from(field(t.int32Data, 'int32_data') as ArrayLike<number>);
      break;
    case 'float16': {
      const v = field(t.int32Data, 'int32_data') as ArrayLike<number>;
      data = Float32Array.from({ length: n }, (_, i) => halfToFloat(v[i]! & 0xffff));
      break;
    }
  }
  return { name, dtype, dims, data };
}

function decodeString(b: Uint8Array | null | undefined): string {
  return b ? new TextDecoder().decode(b) : '';
}

const AT = onnx.AttributeProto.AttributeType;

/** Decodes one attribute; undefined for kinds the op contract has no type for (graphs, types). */
function decodeAttr(a: onnx.IAttributeProto, nodeName: string, ctx: TensorContext): AttrValue | undefined {
  let type = a.type ?? AT.UNDEFINED;
  if (type === AT.UNDEFINED) {
    // IR < 3 files omit the type: infer it from the field that is set.
    if (a.t) type = AT.TENSOR;
    else if (a.ints?.length) type = AT.INTS;
    else if (a.floats?.length) type = AT.FLOATS;
    else if (a.strings?.length) type = AT.STRINGS;
    else if (a.s?.length) type = AT.STRING;
    else if (Object.prototype.hasOwnProperty.call(a, 'f')) type = AT.FLOAT;
    else type = AT.INT;
  }
  switch (type) {
    case AT.FLOAT:
      return a.f ?? 0;
    case AT.INT:
      return toNum(a.i);
    case AT.STRING:
      return decodeString(a.s);
    case AT.FLOATS:
      return [...(a.floats ?? [])];
    case AT.INTS:
      return (a.ints ?? []).map(toNum);
    case AT.STRINGS:
      return (a.strings ?? []).map(decodeString);
    case AT.TENSOR:
      return initializerToRef(decodeTensor(a.t!, ctx, a.t!.name || `${nodeName}.${a.name}`));
    default:
      return undefined;
  }
}

/** Folds a Constant node's value attribute; undefined for values the toolkit has no dtype for. */
function constantValue(node: onnx.INodeProto, name: string, out: string, ctx: TensorContext): Initializer | undefined {
  const a = (node.attribute ?? [])[0];
  if (!a || (node.attribute ?? []).length !== 1) {
    throw new FormatError(ctx.file, `Constant node '${name}' must have exactly one value attribute`);
  }
  switch (a.name) {
    case 'value': {
      if (!a.t) throw new FormatError(ctx.file, `Constant node '${name}' has an empty 'value'`);
      const t = decodeTensor(a.t, ctx, out);
      return { ...t, constant: true };
    }
    case 'value_float':
      return { name: out, dtype: 'float32', dims: [], data: Float32Array.of(a.f ?? 0), constant: true };
    case 'value_floats':
      return { name: out, dtype: 'float32', dims: [a.floats?.length ?? 0], data: Float32Array.from(a.floats ?? []), constant: true };
    case 'value_int':
      return { name: out, dtype: 'int64', dims: [], data: BigInt64Array.of(toBigInt64(a.i)), constant: true };
    case 'value_ints':
      return {
        name: out,
        dtype: 'int64',
        dims: [a.ints?.length ?? 0],
        data: BigInt64Array.from((a.ints ?? []).map((v) => toBigInt64(v))),
        constant: true,
      };
    default:
      return undefined; // value_string(s), sparse_value
  }
}

function decodeValue(v: onnx.IValueInfoProto, file: string, role: string): ValueDecl {
  const name = v.name ?? '';
  const tt = v.type?.tensorType;
  if (!tt) throw new FormatError(file, `graph ${role} '${name}' is not a tensor`);
  const dtype = tt.elemType ? dtypeOf(tt.elemType, `graph ${role} '${name}'`, file) : undefined;
  let dims: Dim[] | undefined;
  if (tt.shape) {
    dims = (tt.shape.dim ?? []).map((d, axis): Dim => {
      if (d.dimParam) return d.dimParam;
      if (Object.prototype.hasOwnProperty.call(d, 'dimValue')) return toNum(d.dimValue);
      return `?${name}:${axis}`; // unknown and unnamed: a symbol of its own
    });
  }
  return { name, ...(dtype ? { dtype } : {}), ...(dims ? { dims } : {}) };
}

interface Unsupported {
  opType: string;
  domain: string;
  /** Opset of the op's domain in the model. */
  opset: number;
  nodes: string[];
  reason?: string;
}

/** Whether the registry runs `opType` of `domain` at `opset`; a reason when it does not. */
export function supportReason(opType: string, domain: string, opset: number): string | undefined {
  const d = normDomain(domain);
  if (d === '' && IMPORTER_OPS.has(opType)) return undefined;
  if (d !== '' && d !== 'com.microsoft') return `domain '${d}' is not supported`;
  const op = resolveOp(d, opType);
  if (!op) {
    // onnxruntime resolves ops by domain too: a LayerNormalization in com.microsoft does not run there.
    const elsewhere = ['', 'com.microsoft'].filter((o) => o !== d && resolveOp(o, opType));
    return elsewhere.length > 0 ? `not implemented in domain '${d || 'ai.onnx'}' (the toolkit has it in ${elsewhere.map((o) => o || 'ai.onnx').join(', ')})` : 'not implemented';
  }
  const { def } = op;
  const since = def.sinceVersion ?? 1;
  if (opset < since) return `implemented from opset ${since}; the model uses opset ${opset}`;
  if (def.untilVersion !== undefined && opset > def.untilVersion) {
    return `implemented up to opset ${def.untilVersion} (a later version changed its semantics); the model uses opset ${opset}`;
  }
  return undefined;
}

/** Deepest nesting of If branches decoded (a hostile file could nest them without end). */
export const MAX_BRANCH_DEPTH = 16;

/** What decoding the nodes of a graph and of its If branches shares. */
interface NodeSink {
  readonly ctx: TensorContext;
  readonly opsets: ReadonlyMap<string, number>;
  /** Every initializer: the file's, folded Constant nodes, and those of If branches (all flattened). */
  readonly initializers: Map<string, Initializer>;
  /** The flat node list. */
  readonly nodes: Node[];
  readonly note: (opType: string, domain: string, node: string, reason?: string) => void;
}

/** An If branch being decoded: its tag, the names it renamed, the enclosing branch. */
interface Branch {
  readonly tag: string;
  readonly rename: ReadonlyMap<string, string>;
  readonly parent: Branch | undefined;
  readonly depth: number;
}

/** The name a branch's node sees for `name`: the innermost renaming, else the name itself. */
function lookup(name: string, branch: Branch | undefined): string {
  for (let b = branch; b; b = b.parent) {
    const r = b.rename.get(name);
    if (r !== undefined) return r;
  }
  return name;
}

/** onnxruntime keeps the latest of several tensors of one name (file initializers, then Constant nodes) and warns. */
function duplicateWarning(file: string, name: string, what: string): void {
  warn(`${file}: '${name}' is defined more than once (${what} repeats it); the latest definition is used, as onnxruntime does`);
}

/**
 * Decodes `raw` into `sink.nodes`: Constant nodes folded into initializers, attributes decoded, op
 * support checked (collected in `note`). An If node is flattened: both branches' nodes join the list
 * (nodes named `<name>@<tag>`, values they produce renamed `<value>@<tag>`, so sibling branches that
 * reuse names stay apart, while a node's scope path before the last '/' is kept), and the If itself
 * becomes `If(cond, then outputs…, else outputs…)`; specialisation keeps one branch.
 */
function decodeNodes(raw: readonly onnx.INodeProto[], sink: NodeSink, branch: Branch | undefined): void {
  const { ctx, opsets } = sink;
  const file = ctx.file;
  const names = branch
    ? raw.map((n, i) => `${n.name || `${n.opType ?? ''}_${i}`}@${branch.tag}`)
    : uniqueNodeNames(
        raw.map((n) => n.name ?? ''),
        raw.map((n) => n.opType ?? ''),
      );
  raw.forEach((n, i) => {
    const opType = n.opType ?? '';
    const domain = normDomain(n.domain);
    const name = names[i]!;
    const outs = (n.output ?? []).map((o) => (o === '' ? '' : lookup(o, branch)));
    const ins = (n.input ?? []).map((v) => (v === '' ? '' : lookup(v, branch)));
    if (opType === '') throw new FormatError(file, `node '${name}' has no op_type`);
    if (opType === 'Constant' && domain === '') {
      if (outs.length !== 1 || outs[0] === '') throw new FormatError(file, `Constant node '${name}' must have one output`);
      const value = constantValue(n, name, outs[0]!, ctx);
      if (value) {
        // onnxruntime turns Constant nodes into initializers appended after the file's: a name
        // both define gets the Constant's value.
        if (sink.initializers.has(outs[0]!)) duplicateWarning(file, outs[0]!, `Constant node '${name}'`);
        sink.initializers.set(outs[0]!, value);
        return;
      }
      // A string or sparse constant stays a node, reported as unsupported.
      sink.note(opType, domain, name, `'${n.attribute![0]!.name}' values are not supported`);
    } else {
      const reason = supportReason(opType, domain, opsets.get(domain) ?? 1);
      if (reason !== undefined) sink.note(opType, domain, name, reason);
    }
    if (opType === 'If' && domain === '') {
      sink.nodes.push(flattenIf(n, name, n.name || `${opType}_${i}`, ins, outs, sink, branch));
      return;
    }
    const attrs: Record<string, AttrValue> = {};
    for (const a of n.attribute ?? []) {
      const v = decodeAttr(a, name, ctx);
      if (v !== undefined) attrs[a.name ?? ''] = v;
    }
    sink.nodes.push({ name, opType, domain, inputs: ins, outputs: outs, attrs: attrs as Attrs });
  });
}

/**
 * Decodes both branches of an If node into `sink` and returns the flattened If node. `name` is its
 * name in the graph, `own` its name in the file (what its branches' tags are made of).
 */
function flattenIf(n: onnx.INodeProto, name: string, own: string, ins: readonly string[], outs: readonly string[], sink: NodeSink, parent: Branch | undefined): Node {
  const file = sink.ctx.file;
  const depth = (parent?.depth ?? 0) + 1;
  if (depth > MAX_BRANCH_DEPTH) throw new FormatError(file, `If node '${name}' nests branches more than ${MAX_BRANCH_DEPTH} deep`);
  if (ins.length !== 1 || ins[0] === '') throw new FormatError(file, `If node '${name}' must have one input (the condition)`);
  const branchOutputs: string[] = [];
  for (const key of ['then_branch', 'else_branch'] as const) {
    const attr = (n.attribute ?? []).find((a) => a.name === key);
    const g = attr?.g;
    if (!g) throw new FormatError(file, `If node '${name}' has no '${key}' graph`);
    if ((g.input ?? []).length > 0) throw new FormatError(file, `If node '${name}': ${key} declares inputs; If branches take none`);
    if ((g.output ?? []).length !== outs.length) {
      throw new FormatError(file, `If node '${name}': ${key} has ${(g.output ?? []).length} outputs, the node has ${outs.length}`);
    }
    if ((g.sparseInitializer ?? []).length > 0) throw new FormatError(file, `If node '${name}': ${key} has sparse initializers, which are not supported`);
    const tag = `${parent ? `${parent.tag}>` : ''}${own.replace(/\//g, '|')}:${key === 'then_branch' ? 'then' : 'else'}`;
    const rename = new Map<string, string>();
    // Values the branch produces are renamed; its initializers keep their names unless taken.
    for (const node of g.node ?? []) {
      for (const o of node.output ?? []) if (o !== '') rename.set(o, `${o}@${tag}`);
    }
    const local: Initializer[] = [];
    for (const t of g.initializer ?? []) {
      const init = decodeTensor(t, sink.ctx);
      if (init.name === '') throw new FormatError(file, `an initializer of If node '${name}' (${key}) has no name`);
      const taken = sink.initializers.has(init.name) || rename.has(init.name) || local.some((l) => l.name === init.name);
      const renamed = taken ? `${init.name}@${tag}` : init.name;
      if (renamed !== init.name) rename.set(init.name, renamed);
      local.push({ ...init, name: renamed });
    }
    for (const init of local) sink.initializers.set(init.name, init);
    const b: Branch = { tag, rename, parent, depth };
    decodeNodes(g.node ?? [], sink, b);
    for (const o of g.output ?? []) branchOutputs.push(lookup(o.name ?? '', b));
  }
  return { name, opType: 'If', domain: '', inputs: [ins[0]!, ...branchOutputs], outputs: [...outs], attrs: {} };
}

/** Builds the Graph IR from a parsed model and its external files (by normalised location). */
export function buildGraph(parsed: ParsedModel, externalData: Readonly<Record<string, Uint8Array>>, options: BuildOptions = {}): Graph {
  const { proto, file } = parsed;
  const g = proto.graph!;
  const external = new Map(Object.entries(externalData).map(([k, v]) => [normLocation(k), v]));
  const ctx: TensorContext = {
    file,
    bytes: parsed.bytes,
    external,
    ...(options.streamed ? { streamed: options.streamed } : {}),
    ...(options.streamedStorage ? { streamedStorage: options.streamedStorage } : {}),
    ...(options.externalTensors ? { externalTensors: options.externalTensors } : {}),
  };

  const opsets = new Map<string, number>();
  for (const o of proto.opsetImport) opsets.set(normDomain(o.domain), toNum(o.version));

  if ((g.sparseInitializer ?? []).length > 0) {
    throw new FormatError(file, `sparse initializers are not supported ('${g.sparseInitializer![0]!.values?.name ?? ''}')`);
  }
  const initializers = new Map<string, Initializer>();
  for (const t of g.initializer ?? []) {
    const init = decodeTensor(t, ctx);
    if (init.name === '') throw new FormatError(file, 'an initializer has no name');
    if (initializers.has(init.name)) duplicateWarning(file, init.name, 'an initializer');
    initializers.set(init.name, init);
  }

  // IR < 4 lists initializers among the inputs too; those are weights, not runtime inputs.
  const inputs: InputDecl[] = [];
  for (const v of g.input ?? []) {
    if (initializers.has(v.name ?? '')) continue;
    const d = decodeValue(v, file, 'input');
    if (!d.dtype) throw new FormatError(file, `graph input '${d.name}' has no element type`);
    inputs.push(d as InputDecl);
  }
  const outputs = (g.output ?? []).map((v) => decodeValue(v, file, 'output'));

  const unsupported = new Map<string, Unsupported>();
  const note = (opType: string, domain: string, node: string, reason?: string): void => {
    const key = `${domain}::${opType}`;
    const u = unsupported.get(key) ?? { opType, domain, opset: opsets.get(domain) ?? 1, nodes: [], ...(reason ? { reason } : {}) };
    u.nodes.push(node);
    unsupported.set(key, u);
  };
  const flat: Node[] = [];
  decodeNodes(g.node ?? [], { ctx, opsets, initializers, nodes: flat, note }, undefined);
  // Branch node names are unique within a branch only when the file made them so.
  const seen = new Set<string>();
  const nodes = flat.map((n) => {
    let name = n.name;
    for (let k = 1; seen.has(name); k++) name = `${n.name}#${k}`;
    seen.add(name);
    return name === n.name ? n : { ...n, name };
  });

  if (nodes.some((n) => n.domain === '') && !opsets.has('')) {
    throw new FormatError(file, 'the model uses ai.onnx ops but does not import the ai.onnx opset');
  }
  const available = new Set<string>([...inputs.map((v) => v.name), ...initializers.keys()]);
  const sorted = topoSort(nodes, available, file);
  const produced = new Set([...available, ...nodes.flatMap((n) => n.outputs)]);
  for (const o of outputs) {
    if (!produced.has(o.name)) throw new FormatError(file, `graph output '${o.name}' is not produced by any node`);
  }

  const decoded: Graph = {
    name: g.name ?? '',
    opsets,
    irVersion: toNum(proto.irVersion),
    producer: `${proto.producerName ?? ''} ${proto.producerVersion ?? ''}`.trim(),
    inputs,
    outputs,
    initializers,
    nodes: sorted,
  };
  // Fused ops become primitives here; one an expansion refuses is reported with the others.
  const expandedGraph = expandGraph(decoded, (node, e) => note(node.opType, node.domain, node.name, e.detail));
  // Half-precision and QDQ 8-bit weights whose readers dequantise stay packed on the GPU (their
  // Casts and DequantizeLinears go: those nodes are no longer unsupported).
  const graph = packFrozenWeights(expandedGraph);
  const kept = new Set(graph.nodes.map((n) => n.name));
  for (const [key, u] of unsupported) {
    u.nodes = u.nodes.filter((n) => kept.has(n));
    if (u.nodes.length === 0) unsupported.delete(key);
  }
  if (unsupported.size > 0 && !options.allowUnsupported) throw unsupportedError([...unsupported.values()], opsets.get('') ?? 0);
  return graph;
}

/** One UnsupportedOpError naming every unsupported op type, a node of each, and the opset. */
function unsupportedError(list: Unsupported[], opset: number): UnsupportedOpsError {
  const parts = list.map((u) => {
    const where = u.nodes.length === 1 ? `node '${u.nodes[0]}'` : `${u.nodes.length} nodes, e.g. '${u.nodes[0]}'`;
    const dom = u.domain ? `${u.domain}.` : '';
    const set = u.domain ? `, ${u.domain} opset ${u.opset}` : '';
    return `${dom}${u.opType} (${where}${set}${u.reason && u.reason !== 'not implemented' ? `: ${u.reason}` : ''})`;
  });
  return new UnsupportedOpsError(
    list.map((u) => ({ opType: u.opType, domain: u.domain, nodes: u.nodes, ...(u.reason ? { reason: u.reason } : {}) })),
    `the model uses ${list.length} op type${list.length === 1 ? '' : 's'} the toolkit does not run ` +
      `(ai.onnx opset ${opset}): ${parts.join(', ')}; see docs/supported-ops.md`,
    opset,
  );
}

/**
 * The UnsupportedOpError of a whole model: `opType`/`nodeName` name the first unsupported op,
 * `ops` lists all of them. (A subclass, so `instanceof UnsupportedOpError` holds.)
 */
export class UnsupportedOpsError extends UnsupportedOpError {
  readonly ops: readonly { opType: string; domain: string; nodes: readonly string[]; reason?: string }[];
  /** The first op's domain ('' for ai.onnx); `opset` is the model's ai.onnx opset. */
  override readonly domain: string;
  constructor(ops: UnsupportedOpsError['ops'], detail: string, opset: number) {
    super(ops[0]!.opType, ops[0]!.nodes[0]!, detail, opset);
    this.ops = ops;
    this.domain = ops[0]!.domain;
  }
}
