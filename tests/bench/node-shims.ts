// What onnxruntime-web's WebGPU provider (the benchmark's baseline) needs to run on Dawn in Node.
// The library itself needs none of this (tests/node prove it); only the baseline does. Imported
// first by node.ts, before onnxruntime-web evaluates.
//  - WebGPU's globals (GPUBufferUsage, …) and `navigator.gpu`, which ORT looks up;
//  - copies of SharedArrayBuffer-backed data for queue.writeBuffer: ORT's WASM memory is shared,
//    and Dawn's binding refuses views of a SharedArrayBuffer ("Invalid argument"), where browsers
//    accept them. The copy adds a CPU memcpy of each upload to ORT's side (inputs and uniforms,
//    small next to a forward pass); the report names it.
import { create, globals } from 'webgpu';

export const dawn: GPU = create([]);

Object.assign(globalThis, globals);
const nav = (globalThis as { navigator?: object }).navigator;
if (nav) Object.defineProperty(nav, 'gpu', { value: dawn, configurable: true });
else Object.defineProperty(globalThis, 'navigator', { value: { gpu: dawn }, configurable: true });

type WriteBuffer = (buffer: GPUBuffer, offset: number, data: BufferSource, dataOffset?: number, size?: number) => void;
const queue = (globals as unknown as { GPUQueue: { prototype: { writeBuffer: WriteBuffer } } }).GPUQueue.prototype;
const writeBuffer = queue.writeBuffer;
queue.writeBuffer = function (this: GPUQueue, buffer, offset, data, dataOffset, size) {
  const view = ArrayBuffer.isView(data);
  const shared = view ? data.buffer instanceof SharedArrayBuffer : (data as unknown) instanceof SharedArrayBuffer;
  if (!shared) return writeBuffer.call(this, buffer, offset, data, dataOffset, size);
  // dataOffset and size count elements of a typed array, bytes of a DataView or an ArrayBuffer.
  const unit = view && 'BYTES_PER_ELEMENT' in data ? (data as unknown as { BYTES_PER_ELEMENT: number }).BYTES_PER_ELEMENT : 1;
  const base = view ? data.byteOffset : 0;
  const start = (dataOffset ?? 0) * unit;
  const bytes = size === undefined ? data.byteLength - start : size * unit;
  const copy = new Uint8Array(bytes);
  copy.set(new Uint8Array(view ? data.buffer : (data as ArrayBufferLike), base + start, bytes));
  return writeBuffer.call(this, buffer, offset, copy);
};
