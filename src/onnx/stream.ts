// Reading an ONNX model as a stream, so that its weights go where they are needed (the GPU) without
// the file's bytes ever being held whole in memory.
//
// A ByteSource is a file read front to back in chunks (a fetch Response body, a Blob or File, or
// bytes), and read again when asked (the merged export re-reads it). `readModelStream` walks the
// protobuf wire format of a ModelProto as the chunks arrive: every field is copied into a
// skeleton except the `raw_data` of initializers larger than `keepBytes`, whose payload is handed
// to a TensorSink as it streams (the GPU upload, onnx/weights-sink.ts) once the tensor's name,
// dtype and dims — which exporters write before raw_data — are known. The skeleton, decoded with
// onnx-proto, is the model with those tensors' data left out; `StreamedTensors` records which.
// Nodes precede initializers in files as exporters write them, so the sink also knows how the
// graph reads a tensor (the block layout of one too large for a binding depends on it).
// `readExternalStream` does the same for an external data file: ranges of large tensors go to the
// sink, small ones are kept.
//
// Every length is checked against its enclosing message and the file's end: a truncated or
// corrupt file is a FormatError with the byte offset, as with onnx-proto's own decoder.

import { onnx } from 'onnx-proto';
import { FormatError } from '../errors.js';
import type { WeightStorage } from '../ir/dtype.js';
import type { Reader } from '../ops/blocks.js';

/** A file read front to back in chunks; each `chunks()` call reads it again from the start. */
export interface ByteSource {
  /** The file's name (for messages). */
  readonly name: string;
  /** Its length when known before reading (Content-Length, a Blob's size, an array's length). */
  readonly size?: number;
  chunks(): AsyncIterable<Uint8Array>;
}

/** A source over bytes already in memory (one chunk). */
export function bytesSource(name: string, bytes: Uint8Array): ByteSource {
  return {
    name,
    size: bytes.length,
    async *chunks() {
      yield bytes;
    },
  };
}

/** A source over a Blob or File (read again from the disk or the browser's blob store each time). */
export function blobSource(name: string, blob: Blob): ByteSource {
  return { name, size: blob.size, chunks: () => streamChunks(blob.stream()) };
}

/**
 * A source over an HTTP response, fetched again for every read after the first (`refetch`).
 * The first response's body is consumed by the first read.
 */
export function responseSource(name: string, first: Response, refetch: () => Promise<Response>): ByteSource {
  let pending: Response | undefined = first;
  const length = Number(first.headers.get('content-length') ?? NaN);
  return {
    name,
    ...(Number.isSafeInteger(length) && length >= 0 && !first.headers.get('content-encoding') ? { size: length } : {}),
    async *chunks() {
      const res = pending ?? (await refetch());
      pending = undefined;
      if (!res.body) {
        yield new Uint8Array(await res.arrayBuffer());
        return;
      }
      yield* streamChunks(res.body);
    },
  };
}

async function* streamChunks(stream: ReadableStream<Uint8Array<ArrayBuffer>>): AsyncIterable<Uint8Array> {
  const reader = stream.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      if (value.length > 0) yield value;
    }
  } finally {
    reader.releaseLock();
  }
}

/** The whole file (the merged export rewrites it in memory). */
export async function readAll(source: ByteSource): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let n = 0;
  for await (const c of source.chunks()) {
    parts.push(c);
    n += c.length;
  }
  return concat(parts, n);
}

function concat(parts: readonly Uint8Array[], n = parts.reduce((s, p) => s + p.length, 0)): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** What a sink learns of a large tensor before its bytes. */
export interface TensorHeader {
  readonly name: string;
  /** ONNX data type code. */
  readonly dataType: number;
  readonly dims: readonly number[];
  /** Bytes of its data as stored in the file. */
  readonly byteLength: number;
  /** The nodes that read it (those seen before it; files list nodes first). */
  readonly readers: readonly Reader[];
  /** The nodes that read another value (a Cast's output), as far as they are known. */
  readonly readersOf: (value: string) => readonly Reader[];
}

/** Receives a tensor's bytes in order; `end` once they are all there. */
export interface TensorWriter {
  write(bytes: Uint8Array): void;
  end(): void;
}

/** Where large tensors go as they stream; `begin` returns undefined to keep one in memory instead. */
export interface TensorSink {
  begin(header: TensorHeader): TensorWriter | undefined;
  /** How a tensor it took is stored when not as f32 (halves kept packed), for the decoder. */
  storage?(name: string): WeightStorage | undefined;
}

/** Progress of a load: bytes read over all files so far, and tensors whose data is in place. */
export interface LoadProgress {
  readonly file: string;
  readonly loadedBytes: number;
  /** Bytes of all files, when their sizes are known (after the .onnx, for external data). */
  readonly totalBytes: number | undefined;
  readonly tensors: number;
  /** Tensors in the model, once the .onnx has been read. */
  readonly totalTensors: number | undefined;
}

/** Initializers whose data went to a sink: their TensorProto (data left out) → bytes streamed. */
export type StreamedTensors = Map<onnx.ITensorProto, number>;

// Field numbers of onnx.proto3 the walk needs.
const MODEL_GRAPH = 7;
const GRAPH_NODE = 1;
const GRAPH_INITIALIZER = 5;
const TENSOR_RAW_DATA = 9;
const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
const WIRE_LEN = 2;
const WIRE_FIXED32 = 5;

/** Reads chunks as a byte cursor with an absolute position. */
class ChunkReader {
  pos = 0;
  private chunk: Uint8Array = new Uint8Array(0);
  private at = 0;
  private readonly it: AsyncIterator<Uint8Array>;

  constructor(
    source: AsyncIterable<Uint8Array>,
    private readonly file: string,
    private readonly onBytes: (n: number) => void,
  ) {
    this.it = source[Symbol.asyncIterator]();
  }

  /** True at the end of the file. */
  async atEnd(): Promise<boolean> {
    return !(await this.fill());
  }

  private async fill(): Promise<boolean> {
    while (this.at >= this.chunk.length) {
      const next = await this.it.next();
      if (next.done) return false;
      this.chunk = next.value;
      this.at = 0;
      this.onBytes(next.value.length);
    }
    return true;
  }

  private truncated(need: number): FormatError {
    return new FormatError(this.file, `truncated or corrupt protobuf: a field needs ${need} more bytes, but the data ends at byte ${this.pos}`, this.pos);
  }

  async byte(): Promise<number> {
    if (!(await this.fill())) throw this.truncated(1);
    this.pos++;
    return this.chunk[this.at++]!;
  }

  /** A varint as a number (lengths and tags; beyond 2^53 is a FormatError). */
  async varint(): Promise<number> {
    const start = this.pos;
    let v = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      const b = await this.byte();
      v += (b & 0x7f) * scale;
      if (b < 0x80) {
        if (!Number.isSafeInteger(v)) throw new FormatError(this.file, `a varint exceeds 2^53`, start);
        return v;
      }
      scale *= 128;
    }
    throw new FormatError(this.file, 'corrupt protobuf: a varint longer than 10 bytes', start);
  }

  /** The next `n` bytes (a copy, or a view into the current chunk). */
  async take(n: number): Promise<Uint8Array> {
    const parts: Uint8Array[] = [];
    let left = n;
    while (left > 0) {
      if (!(await this.fill())) throw this.truncated(left);
      const k = Math.min(left, this.chunk.length - this.at);
      parts.push(this.chunk.subarray(this.at, this.at + k));
      this.at += k;
      this.pos += k;
      left -= k;
    }
    return parts.length === 1 ? parts[0]!.slice() : concat(parts, n);
  }

  /** Hands the next `n` bytes to `write` in the pieces they arrive in. */
  async pipe(n: number, write: (bytes: Uint8Array) => void): Promise<void> {
    let left = n;
    while (left > 0) {
      if (!(await this.fill())) throw this.truncated(left);
      const k = Math.min(left, this.chunk.length - this.at);
      write(this.chunk.subarray(this.at, this.at + k));
      this.at += k;
      this.pos += k;
      left -= k;
    }
  }
}

/** Protobuf varint bytes of `v`. */
function varintBytes(v: number): Uint8Array {
  const out: number[] = [];
  while (v >= 0x80) {
    out.push((v % 128) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return Uint8Array.from(out);
}

/** A field read whole, as its bytes (tag and payload) and its payload. */
async function field(r: ChunkReader, tag: number, end: number, file: string): Promise<{ bytes: Uint8Array; payload: Uint8Array }> {
  const wire = tag & 7;
  const at = r.pos;
  let payload: Uint8Array;
  let prefix = varintBytes(tag);
  if (wire === WIRE_VARINT) {
    const bytes: number[] = [];
    for (let b = 0x80; b >= 0x80 && bytes.length < 10; ) bytes.push((b = await r.byte()));
    payload = Uint8Array.from(bytes);
  } else if (wire === WIRE_FIXED64 || wire === WIRE_FIXED32) {
    payload = await r.take(wire === WIRE_FIXED64 ? 8 : 4);
  } else if (wire === WIRE_LEN) {
    const n = await r.varint();
    if (r.pos + n > end) throw new FormatError(file, `a field of ${n} bytes overruns its message, which ends at byte ${end}`, at);
    prefix = concat([prefix, varintBytes(n)]);
    payload = await r.take(n);
  } else {
    throw new FormatError(file, `corrupt protobuf: wire type ${wire} at byte ${at}`, at);
  }
  if (r.pos > end) throw new FormatError(file, `a field overruns its message, which ends at byte ${end}`, at);
  return { bytes: concat([prefix, payload]), payload };
}

export interface StreamedModel {
  readonly proto: onnx.ModelProto;
  /** Initializers whose data went to the sink. */
  readonly streamed: StreamedTensors;
}

export interface StreamOptions {
  readonly sink?: TensorSink;
  /** raw_data up to this many bytes stays in the decoded message (small tensors the CPU reads). */
  readonly keepBytes: number;
  readonly onBytes?: (n: number) => void;
  readonly onTensor?: () => void;
}

/**
 * Reads a ModelProto from `source`, sending the raw_data of initializers over `keepBytes` to the
 * sink as it arrives. Throws FormatError for a truncated or corrupt file.
 */
export async function readModelStream(source: ByteSource, options: StreamOptions): Promise<StreamedModel> {
  const file = source.name;
  const r = new ChunkReader(source.chunks(), file, options.onBytes ?? (() => undefined));
  const modelParts: Uint8Array[] = [];
  const graphParts: Uint8Array[] = [];
  const tensors: { skeleton: Uint8Array; streamed?: number }[] = [];
  const readers = new Map<string, Reader[]>();
  let graphs = 0;
  while (!(await r.atEnd())) {
    const at = r.pos;
    const tag = await r.varint();
    if (tag >>> 3 !== MODEL_GRAPH || (tag & 7) !== WIRE_LEN) {
      modelParts.push((await field(r, tag, Infinity, file)).bytes);
      continue;
    }
    if (++graphs > 1) throw new FormatError(file, 'the model has more than one graph', at);
    const graphLength = await r.varint();
    const end = r.pos + graphLength;
    while (r.pos < end) {
      const t = await r.varint();
      if (t >>> 3 === GRAPH_INITIALIZER && (t & 7) === WIRE_LEN) {
        const tensorAt = r.pos;
        const tensorLength = await r.varint();
        const tensorEnd = r.pos + tensorLength;
        if (tensorEnd > end) throw new FormatError(file, `an initializer overruns the graph, which ends at byte ${end}`, tensorAt);
        tensors.push(await readTensor(r, tensorEnd, file, options, readers));
        options.onTensor?.();
        continue;
      }
      const f = await field(r, t, end, file);
      graphParts.push(f.bytes);
      if (t >>> 3 === GRAPH_NODE && (t & 7) === WIRE_LEN) noteReaders(f.payload, readers);
    }
    if (r.pos !== end) throw new FormatError(file, `the graph ends at byte ${r.pos}, not at byte ${end} as declared`, end);
  }
  let proto: onnx.ModelProto;
  const streamed: StreamedTensors = new Map();
  try {
    proto = onnx.ModelProto.decode(concat(modelParts));
    if (graphs > 0) {
      const graph = onnx.GraphProto.decode(concat(graphParts));
      graph.initializer = tensors.map((t) => {
        const proto = onnx.TensorProto.decode(t.skeleton);
        if (t.streamed !== undefined) streamed.set(proto, t.streamed);
        return proto;
      });
      proto.graph = graph;
    }
  } catch (e) {
    if (e instanceof FormatError) throw e;
    throw new FormatError(file, `corrupt protobuf (${e instanceof Error ? e.message : String(e)})`);
  }
  return { proto, streamed };
}

/** The nodes reading each value, from one encoded NodeProto (a corrupt one is left to the full decode). */
function noteReaders(payload: Uint8Array, readers: Map<string, Reader[]>): void {
  let node: onnx.NodeProto;
  try {
    node = onnx.NodeProto.decode(payload);
  } catch {
    return;
  }
  addReader(node, readers);
}

/** Records `node` as a reader of each of its inputs (the attributes blockAxis looks at). */
export function addReader(node: onnx.INodeProto, readers: Map<string, Reader[]>): void {
  const attrs: Record<string, unknown> = {};
  for (const a of node.attribute ?? []) if (a.name === 'transB' || a.name === 'axis' || a.name === 'transA' || a.name === 'to') attrs[a.name] = Number(a.i ?? 0);
  const reader: Reader = { opType: node.opType ?? '', inputs: node.input ?? [], outputs: node.output ?? [], attrs };
  for (const i of new Set(node.input ?? [])) {
    const list = readers.get(i);
    if (list) list.push(reader);
    else readers.set(i, [reader]);
  }
}

async function readTensor(r: ChunkReader, end: number, file: string, options: StreamOptions, readers: ReadonlyMap<string, Reader[]>): Promise<{ skeleton: Uint8Array; streamed?: number }> {
  const parts: Uint8Array[] = [];
  let streamed: number | undefined;
  while (r.pos < end) {
    const at = r.pos;
    const tag = await r.varint();
    if (tag >>> 3 === TENSOR_RAW_DATA && (tag & 7) === WIRE_LEN && options.sink) {
      const n = await r.varint();
      if (r.pos + n > end) throw new FormatError(file, `raw_data of ${n} bytes overruns its tensor, which ends at byte ${end}`, at);
      if (n > options.keepBytes) {
        // Exporters write name, data_type and dims before raw_data: the header is complete.
        let head: onnx.TensorProto | undefined;
        try {
          head = onnx.TensorProto.decode(concat(parts));
        } catch {
          head = undefined;
        }
        const writer = head?.name
          ? options.sink.begin({ name: head.name, dataType: head.dataType ?? 0, dims: (head.dims ?? []).map(Number), byteLength: n, readers: readers.get(head.name) ?? [], readersOf: (v) => readers.get(v) ?? [] })
          : undefined;
        if (writer) {
          await r.pipe(n, (b) => writer.write(b));
          writer.end();
          streamed = n;
          continue;
        }
      }
      parts.push(concat([varintBytes(tag), varintBytes(n), await r.take(n)]));
      continue;
    }
    parts.push((await field(r, tag, end, file)).bytes);
  }
  if (r.pos !== end) throw new FormatError(file, `an initializer ends at byte ${r.pos}, not at byte ${end} as declared`, end);
  return { skeleton: concat(parts), ...(streamed !== undefined ? { streamed } : {}) };
}

/** One tensor's bytes in an external data file. */
export interface ExternalRange {
  readonly tensor: onnx.ITensorProto;
  readonly offset: number;
  readonly length: number;
  /** Where its bytes go; undefined to keep them (returned by readExternalStream). */
  readonly writer?: TensorWriter;
}

/**
 * Reads an external data file once, handing each range to its writer or keeping its bytes.
 * Throws FormatError naming the tensor when the file ends before one of its ranges does.
 */
export async function readExternalStream(source: ByteSource, ranges: readonly ExternalRange[], onBytes: (n: number) => void, onTensor: () => void): Promise<Map<onnx.ITensorProto, Uint8Array>> {
  const kept = new Map<onnx.ITensorProto, Uint8Array>();
  const buffers = new Map<ExternalRange, Uint8Array>();
  for (const g of ranges) if (!g.writer) buffers.set(g, new Uint8Array(g.length));
  const order = [...ranges].sort((a, b) => a.offset - b.offset);
  const done = new Set<ExternalRange>();
  let pos = 0;
  let first = 0; // ranges before it are complete
  const end = Math.max(0, ...ranges.map((g) => g.offset + g.length));
  for await (const chunk of source.chunks()) {
    onBytes(chunk.length);
    const c0 = pos;
    const c1 = pos + chunk.length;
    pos = c1;
    for (let i = first; i < order.length && order[i]!.offset < c1; i++) {
      const g = order[i]!;
      const s = Math.max(g.offset, c0);
      const e = Math.min(g.offset + g.length, c1);
      if (s >= e) continue;
      const piece = chunk.subarray(s - c0, e - c0);
      if (g.writer) g.writer.write(piece);
      else buffers.get(g)!.set(piece, s - g.offset);
      if (e === g.offset + g.length && !done.has(g)) {
        done.add(g);
        g.writer?.end();
        onTensor();
      }
    }
    while (first < order.length && done.has(order[first]!)) first++;
    if (pos >= end && first === order.length) break;
  }
  for (const g of order) {
    if (!done.has(g) && g.length > 0) {
      throw new FormatError(source.name, `tensor '${g.tensor.name}' needs bytes ${g.offset}..${g.offset + g.length} but the file has ${pos} bytes`, g.offset);
    }
    if (g.length === 0 && !done.has(g)) g.writer?.end();
  }
  for (const [g, b] of buffers) kept.set(g.tensor, b);
  return kept;
}
