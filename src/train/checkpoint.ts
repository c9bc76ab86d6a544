// Training checkpoints: everything a Trainer needs to continue bit for bit on another device, after
// a reload or a lost GPU, and where they are kept.
//
// A checkpoint holds the trainable tensors (IA3 vectors and modules_to_save copies) and their AdamW
// moments, float32 bit for bit; the optimizer step; the data position (epoch and micro-batches
// consumed: the shuffle is a pure function of seed and epoch, so with the seed this is the whole
// data-order and RNG state); the training arguments; and fingerprints of the base model, the
// adapter configs and trainable layout, and the dataset, so a resume onto anything else is refused
// rather than silently diverging.
//
// Bytes: a safetensors file (inspectable with any safetensors reader) whose tensors are
// `param/<name>`, `exp_avg/<name>`, `exp_avg_sq/<name>` (F32) and whose `__metadata__` holds
// `format: "ia3-webgpu-checkpoint"`, `version: "1"` and `state`: the JSON of everything else. It is
// parsed as untrusted input: the strict safetensors reader, then every field and tensor checked
// (FormatError naming it).
//
// Stores: `MemoryCheckpointStore`, and `OpfsCheckpointStore` (the browser's Origin Private File
// System, by name: it survives a reload). Any other place (IndexedDB, a server) is a small class
// implementing `CheckpointStore` over `encodeCheckpoint` / `decodeCheckpoint`.

import { FormatError, InputError } from '../errors.js';
import { readSafetensors, tensorToFloat32, writeSafetensors, type TensorToWrite } from '../io/safetensors.js';
import type { Graph } from '../ir/graph.js';
import type { Example } from './data.js';

/** The format's name and version in the file's metadata. */
export const CHECKPOINT_FORMAT = 'ia3-webgpu-checkpoint';
export const CHECKPOINT_VERSION = 1;

/** What a checkpoint must match to be resumed. */
export interface CheckpointFingerprint {
  /** The base model's graph: inputs, outputs, nodes and every initializer's name, type and bytes. */
  readonly model: string;
  /** The active adapters' configs (PEFT's JSON), in order. */
  readonly adapters: string;
  /** The dataset the position refers to (its examples, in order). */
  readonly dataset: string;
}

/** A Trainer's complete state after optimizer step `step`. */
export interface Checkpoint {
  /** Optimizer steps taken. */
  readonly step: number;
  /** Data position: the epoch, and the micro-batches of it already consumed. */
  readonly epoch: number;
  readonly consumed: number;
  /** The training arguments of the run (plain JSON values). */
  readonly args: Readonly<Record<string, unknown>>;
  readonly fingerprint: CheckpointFingerprint;
  /** Trainable tensors in the trainer's order, with their values and AdamW moments. */
  readonly tensors: readonly CheckpointTensor[];
}

export interface CheckpointTensor {
  readonly name: string;
  readonly values: Float32Array;
  readonly m: Float32Array;
  readonly v: Float32Array;
}

/** Where a Trainer keeps its checkpoints: `save` replaces the previous one. */
export interface CheckpointStore {
  save(checkpoint: Checkpoint): Promise<void>;
  /** The last checkpoint saved, or undefined when there is none. */
  load(): Promise<Checkpoint | undefined>;
  clear(): Promise<void>;
}

/** Checkpoints in memory (a copy of the last one; survives a lost device, not a reload). */
export class MemoryCheckpointStore implements CheckpointStore {
  private last: Uint8Array | undefined;

  async save(checkpoint: Checkpoint): Promise<void> {
    this.last = encodeCheckpoint(checkpoint);
  }

  async load(): Promise<Checkpoint | undefined> {
    return this.last && decodeCheckpoint(this.last);
  }

  async clear(): Promise<void> {
    this.last = undefined;
  }
}

/**
 * Checkpoints in the browser's Origin Private File System (`navigator.storage.getDirectory()`),
 * as the file `<name>.ia3ckpt`: it survives a reload, so a page can offer to resume an interrupted
 * run. Written to a temporary file first and moved over the old one, so a crash mid-write leaves the
 * previous checkpoint intact.
 */
export class OpfsCheckpointStore implements CheckpointStore {
  constructor(readonly name: string) {
    if (!/^[A-Za-z0-9._-]{1,100}$/.test(name)) throw new InputError(`OpfsCheckpointStore: name '${name}' must be 1–100 letters, digits, '.', '_' or '-'`);
  }

  private get fileName(): string {
    return `${this.name}.ia3ckpt`;
  }

  private async directory(): Promise<FileSystemDirectoryHandle> {
    const storage = (globalThis.navigator as Navigator | undefined)?.storage;
    if (!storage?.getDirectory) throw new InputError('OpfsCheckpointStore needs the Origin Private File System (navigator.storage.getDirectory), which this environment lacks');
    return storage.getDirectory();
  }

  async save(checkpoint: Checkpoint): Promise<void> {
    const dir = await this.directory();
    const bytes = encodeCheckpoint(checkpoint);
    const tmp = await dir.getFileHandle(`${this.fileName}.tmp`, { create: true });
    const w = await tmp.createWritable();
    await w.write(bytes as Uint8Array<ArrayBuffer>);
    await w.close();
    const movable = tmp as FileSystemFileHandle & { move?: (dir: FileSystemDirectoryHandle, name: string) => Promise<void> };
    if (movable.move) {
      await movable.move(dir, this.fileName);
    } else {
      const out = await (await dir.getFileHandle(this.fileName, { create: true })).createWritable();
      await out.write(bytes as Uint8Array<ArrayBuffer>);
      await out.close();
      await dir.removeEntry(`${this.fileName}.tmp`);
    }
  }

  async load(): Promise<Checkpoint | undefined> {
    const dir = await this.directory();
    let handle: FileSystemFileHandle;
    try {
      handle = await dir.getFileHandle(this.fileName);
    } catch {
      return undefined; // NotFoundError: nothing saved under this name
    }
    const file = await handle.getFile();
    return decodeCheckpoint(new Uint8Array(await file.arrayBuffer()), this.fileName);
  }

  async clear(): Promise<void> {
    const dir = await this.directory();
    for (const n of [this.fileName, `${this.fileName}.tmp`]) await dir.removeEntry(n).catch(() => undefined);
  }
}

/** The checkpoint as bytes (see the module header). */
export function encodeCheckpoint(c: Checkpoint): Uint8Array {
  const tensors = new Map<string, TensorToWrite>();
  for (const t of c.tensors) {
    for (const [kind, data] of [['param', t.values], ['exp_avg', t.m], ['exp_avg_sq', t.v]] as const) {
      tensors.set(`${kind}/${t.name}`, { dtype: 'F32', shape: [data.length], data });
    }
  }
  const state = { step: c.step, epoch: c.epoch, consumed: c.consumed, args: c.args, fingerprint: c.fingerprint, order: c.tensors.map((t) => t.name) };
  return writeSafetensors(tensors, { format: CHECKPOINT_FORMAT, version: String(CHECKPOINT_VERSION), state: JSON.stringify(state) });
}

/** Parses checkpoint bytes, checking every field; FormatError naming what is wrong. */
export function decodeCheckpoint(bytes: Uint8Array, fileName = 'checkpoint.ia3ckpt'): Checkpoint {
  const file = readSafetensors(bytes, fileName);
  const fail = (detail: string): never => {
    throw new FormatError(fileName, detail);
  };
  const meta = file.metadata;
  if (meta.format !== CHECKPOINT_FORMAT) fail(`not a checkpoint: metadata format is ${JSON.stringify(meta.format)}, expected "${CHECKPOINT_FORMAT}"`);
  if (meta.version !== String(CHECKPOINT_VERSION)) fail(`checkpoint version ${JSON.stringify(meta.version)} is not supported (this reads version ${CHECKPOINT_VERSION})`);
  let state: unknown;
  try {
    state = JSON.parse(meta.state ?? '');
  } catch (e) {
    fail(`metadata "state" is not JSON (${(e as Error).message})`);
  }
  const o = state as Record<string, unknown>;
  if (!o || typeof o !== 'object' || Array.isArray(o)) return fail('metadata "state" must be a JSON object');
  const count = (k: string): number => {
    const v = o[k];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) fail(`state.${k} must be a non-negative integer, got ${JSON.stringify(v)}`);
    return v as number;
  };
  const step = count('step');
  const epoch = count('epoch');
  const consumed = count('consumed');
  const args = o.args;
  if (!args || typeof args !== 'object' || Array.isArray(args)) fail('state.args must be an object');
  const fp = o.fingerprint as Record<string, unknown> | null;
  if (!fp || typeof fp !== 'object' || !['model', 'adapters', 'dataset'].every((k) => typeof fp[k] === 'string')) fail('state.fingerprint must hold the strings model, adapters and dataset');
  const order = o.order;
  if (!Array.isArray(order) || !order.every((n) => typeof n === 'string') || new Set(order).size !== order.length) fail('state.order must list distinct tensor names');
  const names = order as string[];
  const expected = new Set(names.flatMap((n) => [`param/${n}`, `exp_avg/${n}`, `exp_avg_sq/${n}`]));
  for (const k of file.tensors.keys()) if (!expected.has(k)) fail(`unexpected tensor '${k}'`);
  const tensors = names.map((name) => {
    const get = (kind: string): Float32Array => {
      const t = file.tensors.get(`${kind}/${name}`);
      if (!t) return fail(`tensor '${kind}/${name}' is missing`);
      if (t.dtype !== 'F32' || t.shape.length !== 1) fail(`tensor '${kind}/${name}' must be a 1-D F32 tensor, got ${t.dtype} [${t.shape.join(', ')}]`);
      return tensorToFloat32(t, `${kind}/${name}`);
    };
    const values = get('param');
    const m = get('exp_avg');
    const v = get('exp_avg_sq');
    if (m.length !== values.length || v.length !== values.length) fail(`the moments of '${name}' do not have its ${values.length} elements`);
    return { name, values, m, v };
  });
  return { step, epoch, consumed, args: args as Record<string, unknown>, fingerprint: fp as unknown as CheckpointFingerprint, tensors };
}

// ---------------------------------------------------------------------------------------------
// Fingerprints: 53-bit hashes (cyrb53) as hex, enough to tell a different model or dataset.

class Hash {
  private h1 = 0xdeadbeef;
  private h2 = 0x41c6ce57;

  add(x: number): this {
    this.h1 = Math.imul(this.h1 ^ x, 2654435761);
    this.h2 = Math.imul(this.h2 ^ x, 1597334677);
    return this;
  }

  text(s: string): this {
    for (let i = 0; i < s.length; i++) this.add(s.charCodeAt(i));
    return this.add(s.length);
  }

  /** Every byte of a small array; a strided sample (and the length) of a large one. */
  bytes(b: Uint8Array): this {
    const stride = b.length <= 1 << 20 ? 1 : 4099;
    for (let i = 0; i < b.length; i += stride) this.add(b[i]!);
    return this.add(b.length);
  }

  digest(): string {
    let h1 = Math.imul(this.h1 ^ (this.h1 >>> 16), 2246822507) ^ Math.imul(this.h2 ^ (this.h2 >>> 13), 3266489909);
    const h2 = Math.imul(this.h2 ^ (this.h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
    h1 >>>= 0;
    return (4294967296 * (2097151 & h2) + h1).toString(16).padStart(14, '0');
  }
}

const modelPrints = new WeakMap<Graph, string>();

/** The base model's fingerprint: its graph and every initializer's name, type and bytes. */
export function modelFingerprint(graph: Graph): string {
  let print = modelPrints.get(graph);
  if (print === undefined) {
    const h = new Hash();
    for (const i of graph.inputs) h.text(`${i.name}:${i.dtype}`);
    for (const o of graph.outputs) h.text(o.name);
    for (const n of graph.nodes) h.text(`${n.opType}:${n.inputs.join(',')}:${n.outputs.join(',')}`);
    for (const [name, init] of [...graph.initializers].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      h.text(`${name}:${init.dtype}:${init.dims.join(',')}`);
      // A weight that streamed to the GPU has no CPU data: its value statistics (taken as it
      // streamed, in float64) stand for its bytes.
      if (init.data) h.bytes(new Uint8Array(init.data.buffer, init.data.byteOffset, init.data.byteLength));
      else h.text(init.stats ? `stats:${init.stats.sum}:${init.stats.sumSquares}:${init.stats.min}:${init.stats.max}` : `external:${init.external?.location}:${init.external?.offset}:${init.external?.length}`);
    }
    modelPrints.set(graph, (print = h.digest()));
  }
  return print;
}

/** The dataset's fingerprint: every field of every example, in order. */
export function datasetFingerprint(dataset: readonly Example[]): string {
  const h = new Hash();
  const list = (xs: readonly number[] | undefined): void => {
    if (!xs) {
      h.add(-1);
      return;
    }
    for (const x of xs) h.add(x | 0).add(Math.floor(x / 4294967296));
    h.add(xs.length);
  };
  for (const ex of dataset) {
    list(ex.input_ids);
    list(ex.attention_mask);
    list(ex.labels);
    h.add(ex.label ?? -1);
  }
  return h.add(dataset.length).digest();
}

/** A fingerprint of text (the adapter configs). */
export function textFingerprint(text: string): string {
  return new Hash().text(text).digest();
}
