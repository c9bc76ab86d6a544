// Tensors as the IR sees them: static types, float64 reference tensors, plain data at the API.
//
// A TensorType is a dtype and fully known dims (after specialisation every value has one). A
// RefTensor is the CPU executor's tensor: float64 for every dtype (integer dtypes hold exact
// integers), the oracle of every GPU test. TensorData is how tensors cross the public API.
// `toGpuArray` / `fromGpuBytes` convert between a RefTensor and the GPU's storage of its dtype.

import { gpuStorage, type DataType, type WeightStorage } from './dtype.js';

/** The static type of a value: dtype and fully known dims. */
export interface TensorType {
  readonly dtype: DataType;
  readonly dims: readonly number[];
}

/** A CPU tensor of the reference executor. `data.length` equals the product of `dims`. */
export interface RefTensor {
  readonly dtype: DataType;
  readonly dims: readonly number[];
  readonly data: Float64Array;
}

/** A value at compile time: its type, and its contents when it is a constant. */
export interface ValueInfo extends TensorType {
  readonly value?: RefTensor;
  /** A resident weight stored packed on the GPU (only lowerings that declare `packedInputs` see one). */
  readonly storage?: WeightStorage;
}

/** Tensors cross the public API as plain data. */
export interface TensorData {
  data: Float32Array | Int32Array | BigInt64Array | Uint8Array;
  dims: number[];
}

/** Number of elements of a shape. */
export function sizeOf(dims: readonly number[]): number {
  let n = 1;
  for (const d of dims) n *= d;
  return n;
}

/** Row-major strides of a shape. */
export function stridesOf(dims: readonly number[]): number[] {
  const s = new Array<number>(dims.length);
  let acc = 1;
  for (let i = dims.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= dims[i]!;
  }
  return s;
}

/** A reference tensor of `dims`, zero-filled or holding `data`. */
export function tensor(dtype: DataType, dims: readonly number[], data?: ArrayLike<number>): RefTensor {
  const n = sizeOf(dims);
  const out = new Float64Array(n);
  if (data) {
    if (data.length !== n) throw new Error(`tensor: ${data.length} values for shape [${dims.join(',')}]`);
    out.set(data as ArrayLike<number>);
  }
  return { dtype, dims: [...dims], data: out };
}

/** Converts a reference tensor to the bytes the GPU stores (f32, or i32 for integer types). */
export function toGpuArray(t: RefTensor): Float32Array | Int32Array {
  if (gpuStorage(t.dtype) === 'f32') return Float32Array.from(t.data);
  const out = new Int32Array(t.data.length);
  for (let i = 0; i < t.data.length; i++) {
    const v = t.data[i]!;
    if (v < -0x80000000 || v > 0x7fffffff) {
      throw new RangeError(`value ${v} of a ${t.dtype} tensor does not fit the GPU's 32-bit integers`);
    }
    out[i] = v;
  }
  return out;
}

/** Views GPU bytes as the typed array of `type`'s storage class. */
export function gpuArrayOf(type: TensorType, bytes: ArrayBuffer, length?: number): Float32Array | Int32Array {
  return gpuStorage(type.dtype) === 'f32' ? new Float32Array(bytes, 0, length) : new Int32Array(bytes, 0, length);
}

/** Converts GPU bytes back to a reference tensor of `type`. */
export function fromGpuBytes(type: TensorType, bytes: ArrayBuffer): RefTensor {
  return { dtype: type.dtype, dims: [...type.dims], data: Float64Array.from(gpuArrayOf(type, bytes, sizeOf(type.dims))) };
}
