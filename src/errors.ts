// Typed errors of the toolkit.
//
// Every failure a user can cause (a missing WebGPU adapter, a model with an op we do not run, a
// corrupt file, a tensor of the wrong shape) surfaces as a subclass of IA3Error whose message names
// the problem precisely: the op, the node, the tensor, the byte offset. `code` is stable and meant
// for programs; the message is meant for people.

/**
 * Base class of every error this package throws on purpose. Every subclass sets `name` to a
 * literal: bundlers rename classes, and `name` is what users see and match on.
 */
export class IA3Error extends Error {
  override readonly name: string = 'IA3Error';
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/** WebGPU is missing, no adapter was granted, or the adapter lacks a limit the toolkit needs. */
export class WebGPUUnavailableError extends IA3Error {
  override readonly name: string = 'WebGPUUnavailableError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('WEBGPU_UNAVAILABLE', message, options);
  }
}

/** The GPU device was lost (driver reset, tab backgrounded too long, out of memory). */
export class DeviceLostError extends IA3Error {
  override readonly name: string = 'DeviceLostError';
  readonly reason: string;
  constructor(reason: string, message: string) {
    super('DEVICE_LOST', message);
    this.reason = reason;
  }
}

/** A WGSL kernel failed to compile; carries the offending line and the compiler's message. */
export class ShaderCompileError extends IA3Error {
  override readonly name: string = 'ShaderCompileError';
  readonly kernel: string;
  readonly line: number | undefined;
  constructor(kernel: string, message: string, line?: number) {
    super('SHADER_COMPILE', message);
    this.kernel = kernel;
    this.line = line;
  }
}

/** A GPU operation failed validation or ran out of memory (from an error scope). */
export class GpuExecutionError extends IA3Error {
  override readonly name: string = 'GpuExecutionError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('GPU_EXECUTION', message, options);
  }
}

/** Shapes, dtypes or attributes of an op do not fit together. Names the op and the node. */
export class ShapeError extends IA3Error {
  override readonly name: string = 'ShapeError';
  readonly opType: string;
  readonly nodeName: string;
  constructor(opType: string, nodeName: string, detail: string) {
    super('SHAPE', `${opType} node '${nodeName}': ${detail}`);
    this.opType = opType;
    this.nodeName = nodeName;
  }
}

/** The model uses an op type, attribute value or opset the toolkit does not implement. */
export class UnsupportedOpError extends IA3Error {
  override readonly name: string = 'UnsupportedOpError';
  readonly opType: string;
  readonly nodeName: string;
  readonly opset: number | undefined;
  constructor(opType: string, nodeName: string, detail: string, opset?: number) {
    super(
      'UNSUPPORTED_OP',
      `${opType} node '${nodeName}'${opset === undefined ? '' : ` (opset ${opset})`}: ${detail}`,
    );
    this.opType = opType;
    this.nodeName = nodeName;
    this.opset = opset;
  }
}

/** A file (ONNX, safetensors, JSON config) is malformed. Names the byte offset where known. */
export class FormatError extends IA3Error {
  override readonly name: string = 'FormatError';
  readonly file: string;
  readonly byteOffset: number | undefined;
  constructor(file: string, detail: string, byteOffset?: number) {
    super('FORMAT', `${file}: ${detail}${byteOffset === undefined ? '' : ` (at byte ${byteOffset})`}`);
    this.file = file;
    this.byteOffset = byteOffset;
  }
}

/** A user-supplied argument (feeds, config, options) is invalid. */
export class InputError extends IA3Error {
  override readonly name: string = 'InputError';
  constructor(message: string) {
    super('INPUT', message);
  }
}

/**
 * A tensor does not fit the device's buffer limits and the toolkit cannot split it: names the
 * tensor, its bytes, the limit and what to change. Thrown before any GPU work of the plan.
 */
export class LimitError extends IA3Error {
  override readonly name: string = 'LimitError';
  readonly tensor: string;
  readonly bytes: number;
  readonly limit: number;
  readonly limitName: string;
  constructor(tensor: string, bytes: number, limit: number, limitName: string, detail: string) {
    super(
      'LIMIT',
      `tensor '${tensor}' needs ${bytes.toLocaleString('en-US')} bytes, over the device's ${limitName} of ${limit.toLocaleString('en-US')} bytes: ${detail}`,
    );
    this.tensor = tensor;
    this.bytes = bytes;
    this.limit = limit;
    this.limitName = limitName;
  }
}
