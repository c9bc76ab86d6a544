// safetensors: a strict reader and a byte-exact writer of Hugging Face's tensor file format.
//
// No maintained npm package both validates untrusted files the way the Rust reference
// implementation (huggingface/safetensors, `safetensors/src/tensor.rs`) does and writes the same
// bytes as Python's `safetensors.torch.save_file`, so this module does both, with no dependency.
//
// Layout: 8-byte little-endian u64 N, then N bytes of UTF-8 JSON header, then the data area.
// The header maps each tensor name to {dtype, shape, data_offsets: [begin, end]} (offsets relative
// to the data area, C order, little endian) plus an optional "__metadata__" map of string → string.
//
// Reader invariants (each violation is a FormatError naming the tensor and the byte offset):
//   - N ≤ 100,000,000 (the reference's MAX_HEADER_SIZE) and 8 + N ≤ file size;
//   - the header starts with '{', is valid UTF-8 and valid JSON (parsed here, not by JSON.parse,
//     to catch duplicate keys — JSON.parse keeps the last silently — and to bound nesting);
//   - no key is `__proto__`, `constructor` or `prototype`; results live in Map / null-prototype
//     objects anyway;
//   - every entry has exactly dtype, shape (non-negative safe integers) and data_offsets
//     [begin ≤ end]; element count × dtype size == end − begin;
//   - the ranges, sorted, tile the data area exactly: no overlap, no gap, no trailing bytes (the
//     reference requires this so a file cannot smuggle unindexed bytes — no polyglot files).
// Tensor data is returned as views into the input bytes: nothing is copied.
//
// Writer (matches `prepare`/`serialize` in tensor.rs): tensors ordered by descending dtype rank in
// the Rust `Dtype` enum (its declaration order is increasing alignment), then by name (byte-wise);
// header is compact serde_json with "__metadata__" first, padded with spaces to a multiple of 8;
// data contiguous in the same order. Metadata keys are written sorted: the reference serialises a
// Rust HashMap, whose order is random, so sorting is the only deterministic choice.
//
// Size: the strict reader and the writer of one format share its dtype table and header rules; every
// bound and error of an untrusted-file parser is spelled out here.

import { FormatError, InputError } from '../errors.js';
import { compareCodePoints } from './python.js';

/** Element types this module reads and writes (the 8/16/32/64-bit ones of the format). */
export type SafetensorsDtype =
  | 'BOOL' | 'U8' | 'I8' | 'I16' | 'U16' | 'F16' | 'BF16' | 'I32' | 'U32' | 'F32' | 'F64' | 'I64' | 'U64';

/** Bytes per element of each dtype. */
export const DTYPE_SIZE: Readonly<Record<SafetensorsDtype, number>> = {
  BOOL: 1, U8: 1, I8: 1, I16: 2, U16: 2, F16: 2, BF16: 2, I32: 4, U32: 4, F32: 4, F64: 8, I64: 8, U64: 8,
};

// Relative order of the dtypes in the Rust `Dtype` enum (derive(Ord) follows declaration order:
// BOOL, F4, F6_*, U8, I8, F8_*, I16, U16, F16, BF16, I32, U32, F32, C64, F64, I64, U64). The
// unsupported dtypes in between do not change the relative order of these.
const DTYPE_RANK: Readonly<Record<SafetensorsDtype, number>> = {
  BOOL: 0, U8: 1, I8: 2, I16: 3, U16: 4, F16: 5, BF16: 6, I32: 7, U32: 8, F32: 9, F64: 10, I64: 11, U64: 12,
};

// Dtypes the format defines but this module does not handle (sub-byte floats, FP8, complex): named
// separately so the error says "unsupported" rather than "unknown".
const KNOWN_UNSUPPORTED = new Set([
  'F4', 'F6_E2M3', 'F6_E3M2', 'F8_E5M2', 'F8_E4M3', 'F8_E8M0', 'F8_E4M3FNUZ', 'F8_E5M2FNUZ', 'C64',
]);

/** The reference implementation's MAX_HEADER_SIZE. */
export const MAX_HEADER_BYTES = 100_000_000;

// The header has depth 3 at most ({name: {shape: [..]}}); anything deeper is malformed, and the
// bound keeps the recursive parser's stack small whatever the input.
const MAX_JSON_DEPTH = 16;

const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype']);
const METADATA_KEY = '__metadata__';
const ENTRY_FIELDS = ['dtype', 'shape', 'data_offsets'] as const;

const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** One tensor of a file: `data` is a view of the file's bytes (little endian, C order). */
export interface SafetensorsTensor {
  readonly dtype: SafetensorsDtype;
  readonly shape: readonly number[];
  readonly data: Uint8Array;
}

/** A parsed file. `tensors` iterates in data-offset order; `metadata` is `{}` when absent. */
export interface SafetensorsFile {
  readonly metadata: Readonly<Record<string, string>>;
  readonly tensors: ReadonlyMap<string, SafetensorsTensor>;
}

/** Typed arrays accepted by the writer; a Uint8Array is taken as raw little-endian bytes. */
export type TensorData =
  | Float64Array | Float32Array | Uint16Array | Int16Array | Int32Array | Uint32Array
  | Int8Array | Uint8Array | BigInt64Array | BigUint64Array;

/** A tensor to write. F16 and BF16 values are given as their raw 16-bit patterns (Uint16Array). */
export interface TensorToWrite {
  readonly dtype: SafetensorsDtype;
  readonly shape: readonly number[];
  readonly data: TensorData;
}

// ---------------------------------------------------------------------------------------------
// Reader

/**
 * Parses and validates a safetensors file. Every malformation throws a FormatError whose message
 * names the file, the tensor and the byte offset; nothing else is thrown for any input bytes.
 */
export function readSafetensors(bytes: Uint8Array, fileName = 'adapter_model.safetensors'): SafetensorsFile {
  const fail = (detail: string, at?: number): never => {
    throw new FormatError(fileName, detail, at);
  };
  if (bytes.length < 8) fail(`file is ${bytes.length} bytes, too short for the 8-byte header length`);

  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n64 = view.getBigUint64(0, true);
  if (n64 > BigInt(MAX_HEADER_BYTES)) fail(`header length ${n64} exceeds the limit of ${MAX_HEADER_BYTES} bytes`, 0);
  const n = Number(n64);
  if (8 + n > bytes.length) {
    fail(`header length ${n} runs past the end of the file (header would end at byte ${8 + n}, file is ${bytes.length} bytes)`, 0);
  }
  if (n === 0) fail('header is empty', 8);
  if (bytes[8] !== 0x7b) fail(`header must begin with '{' (0x7b), found 0x${bytes[8]!.toString(16).padStart(2, '0')}`, 8);

  const headerBytes = bytes.subarray(8, 8 + n);
  let text = '';
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(headerBytes);
  } catch {
    fail('header is not valid UTF-8', 8 + firstInvalidUtf8(headerBytes));
  }
  // Parse positions are string indices; errors report file byte offsets.
  const byteAt = (index: number): number => 8 + utf8Length(text, index);
  const header = parseJson(text, (detail, index) => fail(`header is not valid JSON: ${detail}`, byteAt(index)));
  if (header.kind !== 'object') fail(`header must be a JSON object, found ${describe(header)}`, 8);
  const top = header as JObject;

  const dataStart = 8 + n;
  const dataLength = bytes.length - dataStart;
  const metadata: Record<string, string> = Object.create(null) as Record<string, string>;
  interface Entry { name: string; dtype: SafetensorsDtype; shape: number[]; begin: number; end: number }
  const entries: Entry[] = [];

  for (const [name, value] of top.entries) {
    if (name === METADATA_KEY) {
      if (value.kind === 'null') continue; // serde reads `null` as an absent Option
      if (value.kind !== 'object') fail(`__metadata__ must be an object of strings, found ${describe(value)}`, byteAt(value.at));
      for (const [key, v] of (value as JObject).entries) {
        if (v.kind !== 'string') fail(`__metadata__ value of "${key}" must be a string, found ${describe(v)}`, byteAt(v.at));
        metadata[key] = (v as JString).value;
      }
      continue;
    }
    const where = `tensor "${name}"`;
    if (value.kind !== 'object') fail(`${where}: entry must be an object, found ${describe(value)}`, byteAt(value.at));
    const fields = (value as JObject).entries;
    for (const [field, fv] of fields) {
      if (!(ENTRY_FIELDS as readonly string[]).includes(field)) fail(`${where}: unknown field "${field}"`, byteAt(fv.at));
    }
    for (const field of ENTRY_FIELDS) {
      if (!fields.has(field)) fail(`${where}: missing field "${field}"`, byteAt(value.at));
    }
    const dtypeValue = fields.get('dtype')!;
    if (dtypeValue.kind !== 'string') fail(`${where}: dtype must be a string, found ${describe(dtypeValue)}`, byteAt(dtypeValue.at));
    const dtypeName = (dtypeValue as JString).value;
    if (!Object.hasOwn(DTYPE_SIZE, dtypeName)) {
      fail(`${where}: ${KNOWN_UNSUPPORTED.has(dtypeName) ? 'unsupported' : 'unknown'} dtype "${dtypeName}"`, byteAt(dtypeValue.at));
    }
    const dtype = dtypeName as SafetensorsDtype;
    const shape = readIntArray(fields.get('shape')!, `${where}: shape`, fail, byteAt);
    const offsets = readIntArray(fields.get('data_offsets')!, `${where}: data_offsets`, fail, byteAt);
    if (offsets.length !== 2) fail(`${where}: data_offsets must be [begin, end], found ${offsets.length} numbers`, byteAt(fields.get('data_offsets')!.at));
    const [begin, end] = offsets as [number, number];
    if (end < begin) fail(`${where}: data_offsets [${begin}, ${end}] end before they begin`, byteAt(fields.get('data_offsets')!.at));

    // BigInt: a product of safe integers can leave the safe range long before it is rejected.
    let count = 1n;
    for (const d of shape) count *= BigInt(d);
    const expected = count * BigInt(DTYPE_SIZE[dtype]);
    if (expected !== BigInt(end - begin)) {
      fail(`${where}: shape [${shape.join(', ')}] of ${dtype} needs ${expected} bytes but data_offsets [${begin}, ${end}] hold ${end - begin}`, byteAt(fields.get('data_offsets')!.at));
    }
    if (end > dataLength) {
      fail(`${where}: data_offsets [${begin}, ${end}] extend past the end of the data area (${dataLength} bytes, starting at file byte ${dataStart})`, dataStart + Math.min(begin, dataLength));
    }
    entries.push({ name, dtype, shape, begin, end });
  }

  // The ranges must tile [0, dataLength) exactly. Ties (zero-length tensors at one offset) are fine.
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  let previous: Entry | undefined;
  for (const e of entries) {
    if (e.begin < cursor) {
      fail(`tensor "${e.name}": data_offsets [${e.begin}, ${e.end}] overlap tensor "${previous!.name}" [${previous!.begin}, ${previous!.end}]`, dataStart + e.begin);
    }
    if (e.begin > cursor) {
      fail(`data area bytes [${cursor}, ${e.begin}) belong to no tensor (gap before tensor "${e.name}")`, dataStart + cursor);
    }
    cursor = e.end;
    previous = e;
  }
  if (cursor !== dataLength) {
    fail(`data area bytes [${cursor}, ${dataLength}) belong to no tensor (after the last one)`, dataStart + cursor);
  }

  const tensors = new Map<string, SafetensorsTensor>();
  for (const e of entries) {
    tensors.set(e.name, { dtype: e.dtype, shape: e.shape, data: bytes.subarray(dataStart + e.begin, dataStart + e.end) });
  }
  return { metadata, tensors };
}

function readIntArray(
  value: JValue,
  what: string,
  fail: (detail: string, at?: number) => never,
  byteAt: (index: number) => number,
): number[] {
  if (value.kind !== 'array') fail(`${what} must be an array of non-negative integers, found ${describe(value)}`, byteAt(value.at));
  const out: number[] = [];
  (value as JArray).items.forEach((item, i) => {
    // serde reads usize only from integer literals: 1.0, 1e2 and -1 are all rejected.
    if (item.kind !== 'number' || !/^(0|[1-9][0-9]*)$/.test((item as JNumber).raw)) {
      fail(`${what} must be an array of non-negative integers, found ${describe(item)} at index ${i}`, byteAt(item.at));
    }
    const v = Number((item as JNumber).raw);
    if (!Number.isSafeInteger(v)) fail(`${what}: ${(item as JNumber).raw} at index ${i} is too large`, byteAt(item.at));
    out.push(v);
  });
  return out;
}

/**
 * The values of a float tensor as float32: F32 is returned as a view of the file bytes when its
 * offset is 4-byte aligned (else copied), F16, BF16 and F64 are converted (F64 rounds to nearest).
 */
export function tensorToFloat32(tensor: SafetensorsTensor, name = 'tensor'): Float32Array {
  const { data } = tensor;
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  switch (tensor.dtype) {
    case 'F32': {
      if (!LITTLE_ENDIAN_HOST) return Float32Array.from({ length: data.length / 4 }, (_, i) => dv.getFloat32(i * 4, true));
      if (data.byteOffset % 4 === 0) return new Float32Array(data.buffer, data.byteOffset, data.length / 4);
      return new Float32Array(data.slice().buffer);
    }
    case 'F16': {
      const out = new Float32Array(data.length / 2);
      for (let i = 0; i < out.length; i++) out[i] = halfToFloat(dv.getUint16(i * 2, true));
      return out;
    }
    case 'BF16': {
      // bfloat16 is the top half of a float32: widening is exact.
      const out = new Float32Array(data.length / 2);
      const bits = new Uint32Array(out.buffer);
      for (let i = 0; i < out.length; i++) bits[i] = dv.getUint16(i * 2, true) << 16;
      return out;
    }
    case 'F64': {
      const out = new Float32Array(data.length / 8);
      for (let i = 0; i < out.length; i++) out[i] = dv.getFloat64(i * 8, true);
      return out;
    }
    default:
      throw new InputError(`${name} has dtype ${tensor.dtype}, not a floating-point dtype (F32, F16, BF16, F64)`);
  }
}

/** IEEE 754 binary16 bit pattern → number (exact). */
export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24; // subnormal (and ±0)
  if (exp === 0x1f) return frac === 0 ? sign * Infinity : NaN;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

// ---------------------------------------------------------------------------------------------
// Writer

/**
 * Serialises tensors to the exact bytes Python's safetensors writes (see the module header).
 * `metadata` undefined omits "__metadata__"; PEFT adapters pass `{ format: 'pt' }`.
 * Invalid arguments (dtype/array mismatch, element count ≠ shape, reserved names) throw InputError.
 */
export function writeSafetensors(
  tensors: Readonly<Record<string, TensorToWrite>> | ReadonlyMap<string, TensorToWrite>,
  metadata?: Readonly<Record<string, string>>,
): Uint8Array {
  const list: [string, TensorToWrite][] =
    tensors instanceof Map ? [...(tensors as ReadonlyMap<string, TensorToWrite>)] : Object.entries(tensors);
  const prepared = list.map(([name, t]) => ({ name, dtype: t.dtype, shape: t.shape, bytes: tensorBytes(name, t) }));
  prepared.sort((a, b) => DTYPE_RANK[b.dtype] - DTYPE_RANK[a.dtype] || compareCodePoints(a.name, b.name));

  let json = '{';
  let first = true;
  if (metadata !== undefined) {
    const keys = Object.keys(metadata);
    for (const k of keys) {
      const v = metadata[k];
      if (typeof v !== 'string') throw new InputError(`safetensors metadata value of "${k}" must be a string, got ${typeof v}`);
      checkName(k, 'metadata key');
      checkWellFormed(v, `metadata value of "${k}"`);
    }
    keys.sort(compareCodePoints);
    json += `${serdeString(METADATA_KEY)}:{${keys.map((k) => `${serdeString(k)}:${serdeString(metadata[k]!)}`).join(',')}}`;
    first = false;
  }
  let offset = 0;
  for (const t of prepared) {
    const end = offset + t.bytes.length;
    json += `${first ? '' : ','}${serdeString(t.name)}:{"dtype":"${t.dtype}","shape":[${t.shape.join(',')}],"data_offsets":[${offset},${end}]}`;
    first = false;
    offset = end;
  }
  json += '}';

  const header = new TextEncoder().encode(json);
  const n = Math.ceil(header.length / 8) * 8; // padded with spaces (0x20) to 8-byte alignment
  if (n > MAX_HEADER_BYTES) throw new InputError(`safetensors header of ${n} bytes exceeds the limit of ${MAX_HEADER_BYTES}`);
  const out = new Uint8Array(8 + n + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(n), true);
  out.set(header, 8);
  out.fill(0x20, 8 + header.length, 8 + n);
  let at = 8 + n;
  for (const t of prepared) {
    out.set(t.bytes, at);
    at += t.bytes.length;
  }
  return out;
}

// Typed-array constructor expected for each dtype (Uint8Array is always accepted as raw bytes).
const ARRAY_FOR_DTYPE: Readonly<Record<SafetensorsDtype, { name: string; is: (d: TensorData) => boolean }>> = {
  F64: { name: 'Float64Array', is: (d) => d instanceof Float64Array },
  F32: { name: 'Float32Array', is: (d) => d instanceof Float32Array },
  F16: { name: 'Uint16Array (raw half bits)', is: (d) => d instanceof Uint16Array },
  BF16: { name: 'Uint16Array (raw bfloat16 bits)', is: (d) => d instanceof Uint16Array },
  I64: { name: 'BigInt64Array', is: (d) => d instanceof BigInt64Array },
  U64: { name: 'BigUint64Array', is: (d) => d instanceof BigUint64Array },
  I32: { name: 'Int32Array', is: (d) => d instanceof Int32Array },
  U32: { name: 'Uint32Array', is: (d) => d instanceof Uint32Array },
  I16: { name: 'Int16Array', is: (d) => d instanceof Int16Array },
  U16: { name: 'Uint16Array', is: (d) => d instanceof Uint16Array },
  I8: { name: 'Int8Array', is: (d) => d instanceof Int8Array },
  U8: { name: 'Uint8Array', is: (d) => d instanceof Uint8Array },
  BOOL: { name: 'Uint8Array', is: (d) => d instanceof Uint8Array },
};

function tensorBytes(name: string, t: TensorToWrite): Uint8Array {
  const where = `tensor "${name}"`;
  checkName(name, 'tensor name');
  if (name === METADATA_KEY) throw new InputError(`"${METADATA_KEY}" is reserved and cannot name a tensor`);
  if (!Object.hasOwn(DTYPE_SIZE, t.dtype)) throw new InputError(`${where}: unknown dtype "${String(t.dtype)}"`);
  if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new InputError(`${where}: shape must be an array of non-negative integers, got ${JSON.stringify(t.shape)}`);
  }
  const size = DTYPE_SIZE[t.dtype];
  const raw = t.data instanceof Uint8Array;
  if (!raw && !ARRAY_FOR_DTYPE[t.dtype].is(t.data)) {
    throw new InputError(`${where}: dtype ${t.dtype} needs a ${ARRAY_FOR_DTYPE[t.dtype].name} or a Uint8Array of raw bytes, got ${t.data?.constructor?.name ?? typeof t.data}`);
  }
  const count = t.shape.reduce((a, b) => a * b, 1);
  if (t.data.byteLength !== count * size) {
    throw new InputError(`${where}: shape [${t.shape.join(', ')}] of ${t.dtype} needs ${count * size} bytes, data has ${t.data.byteLength}`);
  }
  const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  if (t.dtype === 'BOOL') {
    const bad = bytes.findIndex((b) => b > 1);
    if (bad >= 0) throw new InputError(`${where}: BOOL element ${bad} is ${bytes[bad]}, not 0 or 1`);
  }
  if (raw || size === 1 || LITTLE_ENDIAN_HOST) return bytes;
  // Big-endian host: typed arrays hold native order; the format is little endian.
  const swapped = new Uint8Array(bytes.length);
  for (let i = 0; i < bytes.length; i += size) {
    for (let j = 0; j < size; j++) swapped[i + j] = bytes[i + size - 1 - j]!;
  }
  return swapped;
}

function checkName(name: string, what: string): void {
  if (FORBIDDEN_KEYS.has(name)) throw new InputError(`${what} "${name}" is not allowed (prototype key)`);
  checkWellFormed(name, what);
}

// Rust strings (and so Python's writer) cannot hold lone UTF-16 surrogates.
function checkWellFormed(s: string, what: string): void {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) { i++; continue; }
      throw new InputError(`${what} ${JSON.stringify(s)} contains a lone surrogate at index ${i}`);
    }
    if (c >= 0xdc00 && c <= 0xdfff) throw new InputError(`${what} ${JSON.stringify(s)} contains a lone surrogate at index ${i}`);
  }
}

// serde_json's string escaping: `"` and `\`, the short escapes \b \t \n \f \r, other controls as
// \u00xx with lowercase hex; everything else (including DEL, `/` and non-ASCII) verbatim.
function serdeString(s: string): string {
  let out = '"';
  for (const ch of s) {
    const c = ch.charCodeAt(0);
    if (ch === '"') out += '\\"';
    else if (ch === '\\') out += '\\\\';
    else if (c < 0x20) {
      const short = ({ 8: '\\b', 9: '\\t', 10: '\\n', 12: '\\f', 13: '\\r' } as Record<number, string>)[c];
      out += short ?? `\\u00${c.toString(16).padStart(2, '0')}`;
    } else out += ch;
  }
  return out + '"';
}

// ---------------------------------------------------------------------------------------------
// A strict JSON parser (RFC 8259) that keeps source positions, rejects duplicate and prototype
// keys and bounds nesting. Numbers keep their raw text so integer-ness can be checked exactly.

type JValue = JObject | JArray | JString | JNumber | { kind: 'bool'; at: number } | { kind: 'null'; at: number };
interface JObject { kind: 'object'; at: number; entries: Map<string, JValue> }
interface JArray { kind: 'array'; at: number; items: JValue[] }
interface JString { kind: 'string'; at: number; value: string }
interface JNumber { kind: 'number'; at: number; raw: string }

function describe(v: JValue): string {
  switch (v.kind) {
    case 'object': return 'an object';
    case 'array': return 'an array';
    case 'string': return `the string ${JSON.stringify(v.value.length > 40 ? v.value.slice(0, 40) + '…' : v.value)}`;
    case 'number': return `the number ${v.raw}`;
    case 'bool': return 'a boolean';
    case 'null': return 'null';
  }
}

function parseJson(text: string, fail: (detail: string, index: number) => never): JValue {
  let i = 0;
  const ws = (): void => {
    while (i < text.length) {
      const c = text.charCodeAt(i);
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) i++;
      else break;
    }
  };
  const unexpected = (): never =>
    i >= text.length ? fail('unexpected end of header', i) : fail(`unexpected character ${JSON.stringify(text[i])}`, i);

  const parseString = (): JString => {
    const at = i;
    i++; // opening quote
    let value = '';
    let runStart = i;
    for (;;) {
      if (i >= text.length) fail('unterminated string', at);
      const c = text.charCodeAt(i);
      if (c === 0x22) break;
      if (c < 0x20) fail('control character in string', i);
      if (c !== 0x5c) { i++; continue; }
      value += text.slice(runStart, i);
      const e = text[i + 1];
      const simple = e === undefined ? undefined : ({ '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' } as Record<string, string>)[e];
      if (simple !== undefined) { value += simple; i += 2; }
      else if (e === 'u') {
        const unit = (k: number): number => {
          const hex = text.slice(k, k + 4);
          if (!/^[0-9a-fA-F]{4}$/.test(hex)) fail('invalid \\u escape', k - 2);
          return parseInt(hex, 16);
        };
        const u = unit(i + 2);
        i += 6;
        if (u >= 0xdc00 && u <= 0xdfff) fail('lone surrogate in \\u escape', i - 6);
        if (u >= 0xd800 && u <= 0xdbff) {
          // serde_json (and so the reference) refuses unpaired surrogates.
          if (text[i] !== '\\' || text[i + 1] !== 'u') fail('lone surrogate in \\u escape', i - 6);
          const low = unit(i + 2);
          if (low < 0xdc00 || low > 0xdfff) fail('lone surrogate in \\u escape', i - 6);
          value += String.fromCharCode(u, low);
          i += 6;
        } else value += String.fromCharCode(u);
      } else fail('invalid escape in string', i);
      runStart = i;
    }
    value += text.slice(runStart, i);
    i++; // closing quote
    return { kind: 'string', at, value };
  };

  const parseValue = (depth: number): JValue => {
    if (depth > MAX_JSON_DEPTH) fail(`nesting deeper than ${MAX_JSON_DEPTH} levels`, i);
    ws();
    const at = i;
    const c = text[i];
    if (c === '{') {
      i++;
      const entries = new Map<string, JValue>();
      ws();
      if (text[i] === '}') { i++; return { kind: 'object', at, entries }; }
      for (;;) {
        ws();
        if (text[i] !== '"') unexpected();
        const key = parseString();
        if (FORBIDDEN_KEYS.has(key.value)) fail(`forbidden key "${key.value}"`, key.at);
        if (entries.has(key.value)) fail(`duplicate key "${key.value}"`, key.at);
        ws();
        if (text[i] !== ':') unexpected();
        i++;
        entries.set(key.value, parseValue(depth + 1));
        ws();
        if (text[i] === ',') { i++; continue; }
        if (text[i] === '}') { i++; return { kind: 'object', at, entries }; }
        unexpected();
      }
    }
    if (c === '[') {
      i++;
      const items: JValue[] = [];
      ws();
      if (text[i] === ']') { i++; return { kind: 'array', at, items }; }
      for (;;) {
        items.push(parseValue(depth + 1));
        ws();
        if (text[i] === ',') { i++; continue; }
        if (text[i] === ']') { i++; return { kind: 'array', at, items }; }
        unexpected();
      }
    }
    if (c === '"') return parseString();
    for (const [word, v] of [['true', 'bool'], ['false', 'bool'], ['null', 'null']] as const) {
      if (text.startsWith(word, i)) { i += word.length; return { kind: v, at }; }
    }
    const m = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/.exec(text.slice(i, i + 400));
    if (m && m[0].length > 0 && m[0] !== '-') {
      if (m[0].length === 400) fail('number literal too long', i);
      i += m[0].length;
      return { kind: 'number', at, raw: m[0] };
    }
    return unexpected();
  };

  const value = parseValue(0);
  ws(); // trailing whitespace is the format's padding
  if (i < text.length) unexpected();
  return value;
}

// UTF-8 length of text[0, end) — to turn string indices into byte offsets on error paths.
function utf8Length(text: string, end: number): number {
  let n = 0;
  for (let i = 0; i < end; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < end) { n += 4; i++; }
    else n += 3;
  }
  return n;
}

// Index of the first byte that makes `bytes` invalid UTF-8 (called only once decoding failed).
function firstInvalidUtf8(bytes: Uint8Array): number {
  let i = 0;
  while (i < bytes.length) {
    const b = bytes[i]!;
    let need: number;
    let min: number;
    if (b < 0x80) { i++; continue; }
    else if (b >= 0xc2 && b <= 0xdf) { need = 1; min = 0x80; }
    else if (b >= 0xe0 && b <= 0xef) { need = 2; min = 0x800; }
    else if (b >= 0xf0 && b <= 0xf4) { need = 3; min = 0x10000; }
    else return i;
    let cp = b & (0x3f >> need);
    for (let k = 1; k <= need; k++) {
      const c = bytes[i + k];
      if (c === undefined || (c & 0xc0) !== 0x80) return i;
      cp = (cp << 6) | (c & 0x3f);
    }
    // Overlong forms, UTF-16 surrogates and code points past U+10FFFF are invalid too.
    if (cp < min || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff) return i;
    i += need + 1;
  }
  return bytes.length;
}
