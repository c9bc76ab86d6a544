// The element types of the IR, in one table from which every other fact about a dtype is read.
//
// A DataType is an ONNX element type by its lower-case name. Per dtype the table gives ONNX's
// TensorProto code (files, Cast's `to`), the bytes per element in a file, how the GPU stores it
// (float dtypes as f32, integer and bool dtypes as i32: 4 bytes either way; int64 values must fit 32
// bits there) and whether it is floating point. Nothing else in the tree spells these out again.

/** ONNX tensor element types the toolkit handles (ONNX's names, lower case). */
export type DataType = 'float32' | 'float16' | 'float64' | 'int64' | 'int32' | 'int8' | 'uint8' | 'bool';

/** What the toolkit knows about one dtype. */
export interface DtypeFacts {
  /** ONNX TensorProto.DataType code. */
  readonly onnx: number;
  /** Bytes per element in an ONNX file (or a safetensors file). */
  readonly bytes: number;
  /** Storage class on the GPU. */
  readonly gpu: 'f32' | 'i32';
  readonly float: boolean;
  /** Integer arithmetic runs on it (8-bit integers and bool are only cast and compared). */
  readonly arithmetic: boolean;
}

export const DTYPES: { readonly [T in DataType]: DtypeFacts } = {
  float32: { onnx: 1, bytes: 4, gpu: 'f32', float: true, arithmetic: true },
  float16: { onnx: 10, bytes: 2, gpu: 'f32', float: true, arithmetic: true },
  float64: { onnx: 11, bytes: 8, gpu: 'f32', float: true, arithmetic: true },
  int64: { onnx: 7, bytes: 8, gpu: 'i32', float: false, arithmetic: true },
  int32: { onnx: 6, bytes: 4, gpu: 'i32', float: false, arithmetic: true },
  int8: { onnx: 3, bytes: 1, gpu: 'i32', float: false, arithmetic: false },
  uint8: { onnx: 2, bytes: 1, gpu: 'i32', float: false, arithmetic: false },
  bool: { onnx: 9, bytes: 1, gpu: 'i32', float: false, arithmetic: false },
};

const ALL = Object.keys(DTYPES) as DataType[];

/** float32, float16, float64. */
export const FLOAT_TYPES: ReadonlySet<DataType> = new Set(ALL.filter((t) => DTYPES[t].float));
/** The integer dtypes (bool is neither a float nor an integer here). */
export const INT_TYPES: ReadonlySet<DataType> = new Set(ALL.filter((t) => !DTYPES[t].float && t !== 'bool'));

/** Largest finite float32 (FLT_MAX); WGSL sources get it as `F32_MAX` from the prelude. */
export const F32_MAX = 3.4028234663852886e38;

export function isFloat(dtype: DataType): boolean {
  return DTYPES[dtype].float;
}

/** How a dtype is stored on the GPU: 4 bytes per element either way. */
export function gpuStorage(dtype: DataType): 'f32' | 'i32' {
  return DTYPES[dtype].gpu;
}

const BY_CODE = new Map(ALL.map((t) => [DTYPES[t].onnx, t]));

/** The dtype of an ONNX TensorProto.DataType code, or undefined when the toolkit lacks it. */
export function dtypeFromOnnx(code: number): DataType | undefined {
  return BY_CODE.get(code);
}

/** Every TensorProto.DataType name by code, for error messages about the codes the toolkit lacks. */
const ONNX_NAMES = [
  'UNDEFINED', 'FLOAT', 'UINT8', 'INT8', 'UINT16', 'INT16', 'INT32', 'INT64', 'STRING', 'BOOL', 'FLOAT16',
  'DOUBLE', 'UINT32', 'UINT64', 'COMPLEX64', 'COMPLEX128', 'BFLOAT16', 'FLOAT8E4M3FN', 'FLOAT8E4M3FNUZ',
  'FLOAT8E5M2', 'FLOAT8E5M2FNUZ', 'UINT4', 'INT4',
];

/** ONNX's name of a TensorProto.DataType code ('unknown' past the table). */
export function onnxTypeName(code: number): string {
  return ONNX_NAMES[code] ?? 'unknown';
}

/** Converts an IEEE half-precision bit pattern to a number. */
export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24; // subnormal
  if (exp === 0x1f) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/**
 * How the GPU stores a frozen weight when not as its dtype's default (f32 / i32); the kernels that
 * accept one dequantise on load, on any adapter (no `shader-f16` needed):
 *   - `f16x2`: two IEEE halves per u32 word, element 2j in the low half (`unpack2x16float` order);
 *   - `q4b<block>[z]`: onnxruntime's MatMulNBits 4-bit blocks of a weight W [K, N] (in, out), as
 *     `Q4Layout` describes; `z` when it has zero points (else 8);
 *   - `i8r` / `i8c` / `u8r` / `u8c`: a DequantizeLinear'd 2-D weight, int8 or uint8 codes four per
 *     word, then f32 scales and the zero points (as f32) per row (`r`, axis 0) or column (`c`, axis 1).
 */
export type WeightStorage = 'f16x2' | `q4b${number}` | `q4b${number}z` | 'i8r' | 'i8c' | 'u8r' | 'u8c';

/** The block size and zero-point presence of a `q4b…` storage (undefined for other storages). */
export function q4Storage(storage: WeightStorage | undefined): { blockSize: number; zeroPoints: boolean } | undefined {
  const m = storage ? /^q4b(\d+)(z?)$/.exec(storage) : null;
  return m ? { blockSize: Number(m[1]), zeroPoints: m[2] === 'z' } : undefined;
}

/**
 * The u32 words of a `q4b…` weight W [K, N] (MatMulNBits' B transposed: K in, N out), each region
 * starting on a word: the 4-bit codes as MatMulNBits stores them (row n of N, ⌈K/block⌉ blocks of
 * block/2 bytes, element 2j in the low nibble), then the scales as f32 bits [N, blocks], then the
 * 4-bit zero points [N, ⌈blocks/2⌉] bytes when present; padded to whole 16-byte quads.
 */
export interface Q4Layout {
  readonly K: number;
  readonly N: number;
  readonly blockSize: number;
  readonly blocks: number;
  /** Words per row of codes; scales start at N·rowWords, zero points at N·(rowWords + blocks). */
  readonly rowWords: number;
}

export function q4Layout(K: number, N: number, blockSize: number): Q4Layout {
  const blocks = Math.ceil(K / blockSize);
  return { K, N, blockSize, blocks, rowWords: (blocks * blockSize) / 8 };
}

/** Packs MatMulNBits' codes, scales and optional zero-point bytes into one `q4b…` word array. */
export function packQ4(l: Q4Layout, codes: Uint8Array, scales: ArrayLike<number>, zeroPoints?: Uint8Array): Uint32Array {
  const zpBytes = zeroPoints ? l.N * Math.ceil(l.blocks / 2) : 0;
  const words = l.N * (l.rowWords + l.blocks) + Math.ceil(zpBytes / 4);
  const out = new Uint32Array(Math.ceil(words / 4) * 4);
  const bytes = new Uint8Array(out.buffer);
  bytes.set(codes.subarray(0, l.N * l.rowWords * 4));
  new Float32Array(out.buffer, 4 * l.N * l.rowWords, l.N * l.blocks).set(scales);
  if (zeroPoints) bytes.set(zeroPoints.subarray(0, zpBytes), 4 * l.N * (l.rowWords + l.blocks));
  return out;
}

/** Element (k, n) of a packed `q4b…` weight: (code − zero point) · scale, as onnxruntime dequantises. */
export function q4Value(words: Uint32Array, l: Q4Layout, zeroPoints: boolean, k: number, n: number): number {
  const code = (words[n * l.rowWords + (k >> 3)]! >>> ((k & 7) * 4)) & 15;
  const blk = Math.floor(k / l.blockSize);
  const scale = new Float32Array(words.buffer, words.byteOffset + 4 * (l.N * l.rowWords + n * l.blocks + blk), 1)[0]!;
  let zp = 8;
  if (zeroPoints) {
    const zi = n * Math.ceil(l.blocks / 2) + (blk >> 1);
    zp = (words[l.N * (l.rowWords + l.blocks) + (zi >> 2)]! >>> ((zi & 3) * 8 + (blk & 1) * 4)) & 15;
  }
  return (code - zp) * scale;
}

/** The nearest IEEE half bit pattern of a number (round to nearest even; overflow to ±∞). */
export function floatToHalf(x: number): number {
  const f = new Float32Array([x]);
  const u = new Uint32Array(f.buffer)[0]!;
  const sign = (u >>> 16) & 0x8000;
  const exp = (u >>> 23) & 0xff;
  let mant = u & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let h = mant >>> shift;
    const rest = mant & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rest > half || (rest === half && h & 1)) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  // A carry out of the mantissa rounds the exponent up (to ∞ at the top): the bits stay valid.
  if (rest > 0x1000 || (rest === 0x1000 && h & 1)) h++;
  return sign | h;
}

/** The nearest bfloat16 bit pattern of a number (round to nearest even from its f32; NaN stays NaN). */
export function floatToBfloat16(x: number): number {
  const u = new Uint32Array(new Float32Array([x]).buffer)[0]!;
  if ((u & 0x7fffffff) > 0x7f800000) return ((u >>> 16) & 0x8000) | 0x7fc0;
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

/** The value of a bfloat16 bit pattern. */
export function bfloat16ToFloat(h: number): number {
  return new Float32Array(new Uint32Array([(h & 0xffff) << 16]).buffer)[0]!;
}

/**
 * Values packed as `f16x2` words, padded to whole 16-byte quads (kernels read four halves as one
 * vec2<u32>, so the binding must hold every quad an index reaches).
 */
export function packHalves(values: ArrayLike<number>): Uint32Array {
  const out = new Uint32Array(Math.ceil(values.length / 8) * 4);
  for (let i = 0; i < values.length; i++) {
    out[i >> 1]! |= floatToHalf(values[i]!) << ((i & 1) * 16);
  }
  return out;
}

/** Signedness and channel axis of an 8-bit storage (undefined for other storages). */
export function int8Storage(storage: WeightStorage | undefined): { signed: boolean; axis: 0 | 1 } | undefined {
  const m = storage ? /^([iu])8([rc])$/.exec(storage) : null;
  return m ? { signed: m[1] === 'i', axis: m[2] === 'r' ? 0 : 1 } : undefined;
}

/**
 * The u32 words of an 8-bit weight [R, C]: its codes (row-major, four per word, element 4j in the
 * low byte), then `channels` f32 scales and `channels` f32 zero points, each region on a word;
 * padded to whole 16-byte quads.
 */
export function packInt8(codes: ArrayLike<number>, scales: ArrayLike<number>, zeroPoints: ArrayLike<number>): Uint32Array {
  const codeWords = Math.ceil(codes.length / 4);
  const out = new Uint32Array(Math.ceil((codeWords + 2 * scales.length) / 4) * 4);
  const bytes = new Uint8Array(out.buffer);
  for (let i = 0; i < codes.length; i++) bytes[i] = codes[i]! & 255;
  const f = new Float32Array(out.buffer, 4 * codeWords, 2 * scales.length);
  f.set(scales);
  f.set(zeroPoints, scales.length);
  return out;
}

/** Element (r, c) of a packed 8-bit weight [R, C]: (code − zero point) · scale of its channel. */
export function int8Value(words: Uint32Array, dims: readonly number[], signed: boolean, axis: 0 | 1, r: number, c: number): number {
  const [R, C] = dims as [number, number];
  const e = r * C + c;
  let code = (words[e >> 2]! >>> ((e & 3) * 8)) & 255;
  if (signed && code > 127) code -= 256;
  const channels = axis === 0 ? R : C;
  const ch = axis === 0 ? r : c;
  const f = new Float32Array(words.buffer, words.byteOffset + 4 * Math.ceil((R * C) / 4), 2 * channels);
  return (code - f[channels + ch]!) * f[ch]!;
}
