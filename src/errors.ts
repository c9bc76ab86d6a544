// Typed errors of the toolkit, and its warnings.
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

/**
 * The GPU device was lost (driver reset, tab backgrounded too long, out of memory, `destroy()`).
 * From a Trainer, `checkpointStep` is the step of the last checkpoint saved (undefined: none), from
 * which `Trainer.resume` continues on a new device.
 */
export class DeviceLostError extends IA3Error {
  override readonly name: string = 'DeviceLostError';
  readonly reason: string;
  readonly checkpointStep: number | undefined;
  constructor(reason: string, message: string, checkpointStep?: number) {
    super('DEVICE_LOST', message);
    this.reason = reason;
    this.checkpointStep = checkpointStep;
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
  /** The op's domain when it is not ai.onnx (e.g. 'com.microsoft'); '' otherwise. */
  readonly domain: string;
  /** The reason, without the op and node the message starts with. */
  readonly detail: string;
  constructor(opType: string, nodeName: string, detail: string, opset?: number, domain = '') {
    super(
      'UNSUPPORTED_OP',
      `${domain ? `${domain}.` : ''}${opType} node '${nodeName}'${opset === undefined ? '' : ` (opset ${opset})`}: ${detail}`,
    );
    this.opType = opType;
    this.nodeName = nodeName;
    this.opset = opset;
    this.domain = domain;
    this.detail = detail;
  }
}

/**
 * An index a gather reads lies outside its axis: onnxruntime fails the run with the same words
 * ("indices element out of data bounds"). Raised at specialisation for constant indices, by the
 * CPU executor, and after a GPU step whose index checks flagged (see onnx/index-checks.ts).
 */
export class IndexOutOfRangeError extends IA3Error {
  override readonly name: string = 'IndexOutOfRangeError';
  readonly opType: string;
  readonly nodeName: string;
  constructor(opType: string, nodeName: string, index: number, axisDim: number, detail = '') {
    super(
      'INDEX_OUT_OF_RANGE',
      `${opType} node '${nodeName}': indices element out of data bounds, idx=${index} must be within the inclusive range [${-axisDim},${axisDim - 1}]${detail ? ` (${detail})` : ''}`,
    );
    this.opType = opType;
    this.nodeName = nodeName;
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
 * A warning: what onnxruntime logs and accepts (a duplicate initializer, a declared output shape
 * the run contradicts). Warnings go to the console, like PEFT's Python warnings.
 */
export function warn(message: string): void {
  console.warn(`ia3-webgpu: ${message}`);
}

const warned = new WeakMap<object, Set<string>>();

/** `warn`, once per `subject` (a graph) and `key` (a value name). */
export function warnOnce(subject: object, key: string, message: string): void {
  let keys = warned.get(subject);
  if (!keys) warned.set(subject, (keys = new Set()));
  if (keys.has(key)) return;
  keys.add(key);
  warn(message);
}

/**
 * A tensor or buffer would exceed its size budget: a CPU fold (derived from the model and its
 * inputs), a GPU allocation (the device's limits). Raised before anything is allocated.
 */
export class SizeLimitError extends IA3Error {
  override readonly name: string = 'SizeLimitError';
  /** What would have been allocated, e.g. "ConstantOfShape node 'c' output 0". */
  readonly what: string;
  readonly size: number;
  readonly limit: number;
  constructor(what: string, size: number, limit: number, unit: 'elements' | 'bytes', why: string) {
    super('SIZE_LIMIT', `${what}: ${size.toLocaleString('en-US')} ${unit} exceed the limit of ${limit.toLocaleString('en-US')} ${unit} (${why})`);
    this.what = what;
    this.size = size;
    this.limit = limit;
  }

  /**
   * A tensor the toolkit cannot split to fit one GPU binding: names the tensor (and the node output
   * that computes it, `producer`), its bytes, the device limit's name and (in `detail`) what to change.
   */
  static binding(tensor: string, bytes: number, limit: number, limitName: string, detail: string, producer?: string): SizeLimitError {
    const what = producer ? `tensor '${tensor}' (${producer})` : `tensor '${tensor}'`;
    return new SizeLimitError(what, bytes, limit, 'bytes', `the device's ${limitName}: ${detail}`);
  }
}

/** An object was used after `dispose()` (or after `mergeAndUnload()` consumed it). */
export class DisposedError extends IA3Error {
  override readonly name: string = 'DisposedError';
  constructor(message: string) {
    super('DISPOSED', message);
  }
}

/**
 * An operation conflicts with one in progress: a second `train()` on a Trainer or on a PeftModel,
 * or a change of the adapters (merge, setAdapter, loadStateDict, dispose, …) while one trains.
 */
export class BusyError extends IA3Error {
  override readonly name: string = 'BusyError';
  constructor(message: string) {
    super('BUSY', message);
  }
}
