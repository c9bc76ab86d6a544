// PEFT adapter files: `adapter_model.safetensors` + `adapter_config.json`, exactly as PEFT writes
// them (keys `base_model.model.<module path>.ia3_l` and modules_to_save parameters, float32,
// metadata {"format": "pt"}), and their loading, all-or-nothing. This module moves bytes and
// tensors; what the config says is peft/config.ts's business (it passes its serialised text in, and
// its parser to `readAdapterFiles`), so the file layer sits below the PEFT layer.

import { FormatError, InputError } from '../errors.js';
import type { TensorData } from '../ir/tensor.js';
import { readSafetensors, tensorToFloat32, writeSafetensors, type TensorToWrite } from './safetensors.js';

export const ADAPTER_WEIGHTS = 'adapter_model.safetensors';
export const ADAPTER_CONFIG = 'adapter_config.json';

/** The two files of a saved adapter. */
export interface AdapterFiles {
  'adapter_model.safetensors': Uint8Array;
  'adapter_config.json': string;
}

/** Largest adapter_config.json accepted (bytes of UTF-8); a larger Blob is refused unread. */
export const MAX_CONFIG_BYTES = 1_000_000;

/** PEFT's two files from a serialised config and PEFT-keyed float32 tensors. */
export function writeAdapterFiles(configJson: string, tensors: Readonly<Record<string, TensorData>>): AdapterFiles {
  const toWrite: Record<string, TensorToWrite> = {};
  for (const [key, t] of Object.entries(tensors)) {
    if (!(t.data instanceof Float32Array)) throw new InputError(`adapter tensor '${key}' must be float32`);
    toWrite[key] = { dtype: 'F32', shape: t.dims, data: t.data };
  }
  return {
    [ADAPTER_WEIGHTS]: writeSafetensors(toWrite, { format: 'pt' }),
    [ADAPTER_CONFIG]: configJson,
  };
}

/** Files as a user hands them over: bytes or text, or `File`s / `Blob`s by name. */
export type AdapterSource =
  | { readonly 'adapter_model.safetensors': Uint8Array | ArrayBuffer | Blob; readonly 'adapter_config.json': string | Uint8Array | Blob }
  | readonly File[]
  | FileList;

// Accepts the value types AdapterSource allows; anything else (from untyped callers) is an InputError.
function checkPart(file: string, d: unknown, text: boolean): Uint8Array | ArrayBuffer | Blob | string {
  if (d instanceof Uint8Array || d instanceof ArrayBuffer || (typeof Blob !== 'undefined' && d instanceof Blob) || (text && typeof d === 'string')) return d;
  const kind = d === null ? 'null' : typeof d === 'object' ? (d.constructor?.name ?? 'object') : typeof d;
  throw new InputError(`${file} must be ${text ? 'a string, ' : ''}a Uint8Array, an ArrayBuffer or a Blob, got ${kind}`);
}

async function bytesOf(d: Uint8Array | ArrayBuffer | Blob): Promise<Uint8Array> {
  if (d instanceof Uint8Array) return d;
  if (d instanceof ArrayBuffer) return new Uint8Array(d);
  return new Uint8Array(await d.arrayBuffer());
}

/**
 * Reads an adapter's files: the config, through `parseConfig` (given the file's text or bytes,
 * bounded by MAX_CONFIG_BYTES, and its name), then the tensors (float32, PEFT keys and shapes).
 */
export async function readAdapterFiles<C>(
  source: AdapterSource,
  parseConfig: (content: string | Uint8Array, fileName: string) => C,
): Promise<{ config: C; tensors: Record<string, TensorData> }> {
  let weights: unknown;
  let config: unknown;
  if (Array.isArray(source) || (typeof FileList !== 'undefined' && source instanceof FileList)) {
    for (const f of source as Iterable<File>) {
      // Two files of one name would make the choice arbitrary: refuse rather than guess.
      if ((f.name === ADAPTER_WEIGHTS && weights !== undefined) || (f.name === ADAPTER_CONFIG && config !== undefined)) {
        throw new InputError(`the adapter's files hold ${f.name} twice`);
      }
      if (f.name === ADAPTER_WEIGHTS) weights = f;
      if (f.name === ADAPTER_CONFIG) config = f;
    }
  } else if (source !== null && typeof source === 'object') {
    const s = source as Exclude<AdapterSource, readonly File[] | FileList>;
    weights = s[ADAPTER_WEIGHTS];
    config = s[ADAPTER_CONFIG];
  } else {
    throw new InputError(`an adapter is given as { '${ADAPTER_WEIGHTS}', '${ADAPTER_CONFIG}' } or as Files, got ${source === null ? 'null' : typeof source}`);
  }
  if (weights === undefined) throw new InputError(`the adapter has no ${ADAPTER_WEIGHTS}`);
  if (config === undefined) throw new InputError(`the adapter has no ${ADAPTER_CONFIG}`);
  const weightsPart = checkPart(ADAPTER_WEIGHTS, weights, false) as Uint8Array | ArrayBuffer | Blob;
  const configPart = checkPart(ADAPTER_CONFIG, config, true);
  // Bytes go to the parser undecoded: IA3Config.fromJSON bounds their size and refuses invalid UTF-8 (a lenient
  // decode would turn a corrupt file into silently different module names). A Blob is bounded
  // before it is read.
  if (typeof Blob !== 'undefined' && configPart instanceof Blob && configPart.size > MAX_CONFIG_BYTES) {
    throw new FormatError(ADAPTER_CONFIG, `${configPart.size} bytes, larger than the ${MAX_CONFIG_BYTES}-byte limit for a config file`);
  }
  const parsed = parseConfig(typeof configPart === 'string' ? configPart : await bytesOf(configPart), ADAPTER_CONFIG);
  const file = readSafetensors(await bytesOf(weightsPart), ADAPTER_WEIGHTS);
  const tensors: Record<string, TensorData> = Object.create(null) as Record<string, TensorData>;
  for (const [key, t] of file.tensors) {
    if (t.dtype !== 'F32' && t.dtype !== 'F16' && t.dtype !== 'BF16' && t.dtype !== 'F64') {
      throw new FormatError(ADAPTER_WEIGHTS, `tensor '${key}' has dtype ${t.dtype}; adapter tensors are floating point`);
    }
    tensors[key] = { data: tensorToFloat32(t, key), dims: [...t.shape] };
  }
  return { config: parsed, tensors };
}
