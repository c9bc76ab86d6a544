// Loading a model from wherever the user has it: a URL of a Hugging Face style folder
// (`config.json`, `onnx/model.onnx`, `onnx/model.onnx_data` — the layout transformers.js uses), a
// URL of an .onnx file, bytes, a File, or the files of a folder picked with `webkitdirectory`; in
// Node also a file path (or `file:` URL) of such a folder or .onnx, read with node:fs, which is
// imported only there (see runtime.ts), so browser bundles hold no file-system code.
//
// The .onnx is parsed first, so external data is fetched (or looked up among the given files) only
// for the locations its initializers actually name; a missing one is an InputError naming both the
// location and a tensor stored there. Files are kept as Uint8Arrays: the graph's weights are views
// into them, so they are not copied again.

import { FormatError, InputError } from '../errors.js';
import type { Graph } from '../ir/graph.js';
import { buildGraph, externalDataRefs, normLocation, parseModel } from './decode.js';
import { importNodeModule, isNode } from '../runtime.js';

/** A model: URL (folder or .onnx), bytes, a File, or the files of a folder; in Node also a file path. */
export type ModelSource = string | URL | ArrayBuffer | Uint8Array | Blob | readonly File[] | FileList;

/** Bytes of a file, in any of the forms a browser hands out. */
export type FileData = Uint8Array | ArrayBuffer | Blob;

export interface LoadOnnxOptions {
  /** External data files by location (as the model names them, e.g. 'model.onnx_data'). */
  readonly externalData?: Readonly<Record<string, FileData>>;
  /** The .onnx inside a folder (default 'onnx/model.onnx', then 'model.onnx'). */
  readonly modelFile?: string;
  /**
   * fetch used for URLs (default: globalThis.fetch); injectable for tests and custom auth. When
   * given, a string source is always a URL, in Node too (never a file path).
   */
  readonly fetch?: (url: string) => Promise<Response>;
  /** Build the graph even with unsupported ops (inspection only; see DecodeOptions). */
  readonly allowUnsupported?: boolean;
}

export interface LoadedOnnx {
  readonly graph: Graph;
  /** The parsed config.json, when the source had one. */
  readonly config: Record<string, unknown> | undefined;
  /** Every file read, by path relative to the model folder (e.g. 'onnx/model.onnx'). */
  readonly files: Readonly<Record<string, Uint8Array>>;
  /** Key of the .onnx in `files`. */
  readonly modelPath: string;
  /** The external data files by location, as the model's tensors name them. */
  readonly externalData: Readonly<Record<string, Uint8Array>>;
}

const DEFAULT_MODEL_FILES = ['onnx/model.onnx', 'model.onnx'];

async function bytesOf(d: FileData): Promise<Uint8Array> {
  if (d instanceof Uint8Array) return d;
  if (d instanceof ArrayBuffer) return new Uint8Array(d);
  return new Uint8Array(await d.arrayBuffer());
}

function isBlob(x: unknown): x is Blob {
  return typeof Blob !== 'undefined' && x instanceof Blob;
}

function parseConfig(bytes: Uint8Array, path: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    throw new FormatError(path, `not valid JSON (${e instanceof Error ? e.message : String(e)})`);
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new FormatError(path, 'must hold a JSON object');
  return v as Record<string, unknown>;
}

function dirname(path: string): string {
  const i = path.lastIndexOf('/');
  return i < 0 ? '' : path.slice(0, i);
}

function joinPath(dir: string, rel: string): string {
  const parts = (dir ? `${dir}/${rel}` : rel).split('/');
  const out: string[] = [];
  for (const p of parts) {
    if (p === '' || p === '.') continue;
    if (p === '..') out.pop();
    else out.push(p);
  }
  return out.join('/');
}

/**
 * Loads an ONNX model and its config. See ModelSource for the accepted sources.
 * Throws FormatError for malformed files, InputError for missing ones, UnsupportedOpError for ops
 * the toolkit does not run.
 */
export async function loadOnnx(source: ModelSource, options: LoadOnnxOptions = {}): Promise<LoadedOnnx> {
  const given = new Map<string, FileData>();
  for (const [k, v] of Object.entries(options.externalData ?? {})) given.set(normLocation(k), v);

  if (typeof source === 'string' || source instanceof URL) {
    const path = await filePathOf(source, options);
    return path === undefined ? loadFromStore(String(source), urlStore(options), given, options) : loadFromStore(path, await diskStore(), given, options);
  }
  if (source instanceof Uint8Array || source instanceof ArrayBuffer) {
    return finish(await bytesOf(source), 'model.onnx', undefined, given, async () => undefined, options);
  }
  if (isBlob(source)) {
    const name = (source as File).name || 'model.onnx';
    return finish(await bytesOf(source), name, undefined, given, async () => undefined, options);
  }
  if (Array.isArray(source) || (typeof source === 'object' && source !== null && 'length' in source)) {
    return loadFileList(Array.from(source as ArrayLike<File>), given, options);
  }
  throw new InputError('loadOnnx: the source must be a URL, bytes, a File or a list of Files');
}

/** Parses the model, resolves its external data, builds the graph. */
async function finish(
  bytes: Uint8Array,
  modelPath: string,
  config: Record<string, unknown> | undefined,
  given: ReadonlyMap<string, FileData>,
  find: (location: string) => Promise<{ path: string; bytes: Uint8Array } | undefined>,
  options: LoadOnnxOptions,
  extraFiles: Record<string, Uint8Array> = {},
): Promise<LoadedOnnx> {
  const fileName = modelPath.split('/').pop() ?? modelPath;
  const parsed = parseModel(bytes, fileName);
  const files: Record<string, Uint8Array> = { ...extraFiles, [modelPath]: bytes };
  const external: Record<string, Uint8Array> = {};
  for (const ref of externalDataRefs(parsed)) {
    const base = ref.location.split('/').pop()!;
    const g = given.get(ref.location) ?? [...given].find(([k]) => k.split('/').pop() === base)?.[1];
    if (g) {
      external[ref.location] = await bytesOf(g);
      files[joinPath(dirname(modelPath), ref.location)] = external[ref.location]!;
      continue;
    }
    // ONNX locations are relative to the model's folder; one that leaves it (an untrusted file
    // naming '../../home/…' or '/etc/…') is refused before anything is read.
    if (/^(\/|[a-z]:)/i.test(ref.location) || ref.location.split('/').includes('..')) {
      throw new FormatError(fileName, `tensor '${ref.tensor}': external data location '${ref.location}' is outside the model's folder`);
    }
    const found = await find(ref.location);
    if (!found) {
      throw new InputError(
        `tensor '${ref.tensor}' of ${fileName} stores its data in the external file '${ref.location}', which was not found ` +
          `(keep it next to the model, or pass it in options.externalData['${ref.location}'])`,
      );
    }
    external[ref.location] = found.bytes;
    files[found.path] = found.bytes;
  }
  const graph = buildGraph(parsed, external, options);
  return { graph, config, files, modelPath, externalData: external };
}

/**
 * Where the files of a model live: behind URLs (fetch) or, in Node, on disk. The loader walks either
 * the same way (folder → config.json and onnx/model.onnx; an .onnx → external data beside it).
 */
interface FileStore {
  /** A file's bytes, or undefined when there is no such file (HTTP 404, ENOENT). */
  get(location: string): Promise<Uint8Array | undefined>;
  /** Whether `location` names the model file itself rather than the folder holding it. */
  isModelFile(location: string): Promise<boolean>;
  /** Splits a location into its path and the suffix every derived location keeps (a URL's query). */
  split(location: string): [path: string, suffix: string];
  /** How a file is got and why one is absent, for messages: fetch / HTTP 404, read / no such file. */
  readonly verb: 'fetch' | 'read';
  readonly absent: string;
}

/** Joins a relative path to a location, keeping its suffix (the query string of a signed URL). */
function joinLocation(store: FileStore, base: string, rel: string): string {
  const [path, suffix] = store.split(base);
  const dir = path.replace(/\/+$/, '');
  return `${dir === '' && !path.startsWith('/') ? '' : `${dir}/`}${rel}${suffix}`;
}

function urlStore(options: LoadOnnxOptions): FileStore {
  const fetchFn = options.fetch ?? ((u: string) => globalThis.fetch(u));
  const split = (url: string): [string, string] => {
    const cut = url.search(/[?#]/);
    return cut < 0 ? [url, ''] : [url.slice(0, cut), url.slice(cut)];
  };
  return {
    split,
    verb: 'fetch',
    absent: 'HTTP 404',
    isModelFile: async (url) => /\.onnx$/i.test(split(url)[0]),
    async get(u) {
      let res: Response;
      try {
        res = await fetchFn(u);
      } catch (e) {
        throw new InputError(`could not fetch ${u}: ${e instanceof Error ? e.message : String(e)}`);
      }
      if (res.status === 404) return undefined;
      if (!res.ok) throw new InputError(`could not fetch ${u}: HTTP ${res.status}`);
      return new Uint8Array(await res.arrayBuffer());
    },
  };
}

/** Files on disk, in Node: a folder path or the path of the .onnx itself (its name need not end in .onnx). */
async function diskStore(): Promise<FileStore> {
  const fs = await importNodeModule('node:fs/promises');
  const code = (e: unknown): string | undefined => (e as { code?: string } | null)?.code;
  const missing = (e: unknown): boolean => code(e) === 'ENOENT' || code(e) === 'ENOTDIR';
  return {
    split: (path) => [path, ''],
    verb: 'read',
    absent: 'no such file',
    async isModelFile(path) {
      try {
        return (await fs.stat(path)).isFile();
      } catch (e) {
        if (missing(e)) throw new InputError(`no such file or folder: ${path}`);
        throw new InputError(`could not read ${path}: ${e instanceof Error ? e.message : String(e)}`);
      }
    },
    async get(path) {
      try {
        const b = await fs.readFile(path);
        return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
      } catch (e) {
        if (missing(e) || code(e) === 'EISDIR') return undefined;
        throw new InputError(`could not read ${path}: ${e instanceof Error ? e.message : String(e)}`);
      }
    },
  };
}

/**
 * The file path a string or URL names, when it names one: in Node, without an injected fetch, a
 * `file:` URL or a string with no URL scheme (`C:\\…` is a path: schemes have two letters or more).
 */
async function filePathOf(source: string | URL, options: LoadOnnxOptions): Promise<string | undefined> {
  if (!isNode() || options.fetch) return undefined;
  const s = String(source);
  if (/^file:/i.test(s)) return (await importNodeModule('node:url')).fileURLToPath(s).replace(/\\/g, '/');
  if (/^[a-z][a-z0-9+.-]+:/i.test(s)) return undefined;
  return s.replace(/\\/g, '/');
}

async function loadFromStore(url: string, store: FileStore, given: ReadonlyMap<string, FileData>, options: LoadOnnxOptions): Promise<LoadedOnnx> {
  const optional = async (u: string): Promise<Uint8Array | undefined> => {
    try {
      return await store.get(u);
    } catch {
      return undefined; // an optional file (config.json) may be absent or blocked
    }
  };

  let modelUrl: string;
  let modelPath: string;
  let bytes: Uint8Array | undefined;
  let config: Record<string, unknown> | undefined;
  const extra: Record<string, Uint8Array> = {};
  const [path, query] = store.split(url);
  if (await store.isModelFile(url)) {
    modelUrl = url;
    bytes = await store.get(url);
    if (!bytes) throw new InputError(`could not ${store.verb} ${url}: ${store.absent}`);
    const dir = dirname(path);
    const name = path.split('/').pop()!;
    modelPath = name;
    // The HF layout keeps config.json one level above onnx/.
    if (/(^|\/)onnx$/.test(dir)) {
      modelPath = `onnx/${name}`;
      const c = await optional(joinLocation(store, dirname(dir) + query, 'config.json'));
      if (c) {
        config = parseConfig(c, 'config.json');
        extra['config.json'] = c;
      }
    }
  } else {
    const c = await optional(joinLocation(store, url, 'config.json'));
    if (c) {
      config = parseConfig(c, 'config.json');
      extra['config.json'] = c;
    }
    const tried: string[] = [];
    modelUrl = '';
    modelPath = '';
    for (const candidate of options.modelFile ? [options.modelFile] : DEFAULT_MODEL_FILES) {
      const u = joinLocation(store, url, candidate);
      tried.push(u);
      bytes = await store.get(u);
      if (bytes) {
        modelUrl = u;
        modelPath = candidate;
        break;
      }
    }
    if (!bytes) throw new InputError(`no ONNX model found: tried ${tried.join(', ')} (${store.absent})`);
  }
  const [modelFile, suffix] = store.split(modelUrl);
  const find = async (location: string) => {
    const b = await store.get(joinLocation(store, dirname(modelFile) + suffix, location));
    return b ? { path: joinPath(dirname(modelPath), location), bytes: b } : undefined;
  };
  return finish(bytes, modelPath, config, given, find, options, extra);
}

async function loadFileList(list: File[], given: ReadonlyMap<string, FileData>, options: LoadOnnxOptions): Promise<LoadedOnnx> {
  const pathOf = (f: File): string => (f as File & { webkitRelativePath?: string }).webkitRelativePath || f.name;
  const entries = list.map((f) => ({ file: f, path: pathOf(f).replace(/\\/g, '/') }));
  const onnxFiles = entries.filter((e) => /\.onnx$/i.test(e.path));
  const endsWith = (path: string, tail: string): boolean => path === tail || path.endsWith(`/${tail}`);
  let model: (typeof entries)[number] | undefined;
  if (options.modelFile) {
    model = entries.find((e) => endsWith(e.path, options.modelFile!));
  } else {
    for (const tail of DEFAULT_MODEL_FILES) {
      model ??= onnxFiles.find((e) => endsWith(e.path, tail));
    }
    if (!model && onnxFiles.length === 1) model = onnxFiles[0];
  }
  if (!model) {
    const names = onnxFiles.map((e) => `'${e.path}'`).join(', ') || 'none';
    throw new InputError(
      `no ONNX model among the ${list.length} files (.onnx files: ${names})` +
        (onnxFiles.length > 1 ? '; choose one with options.modelFile' : ''),
    );
  }
  // Paths relative to the folder root: the picked folder's own name is the first segment.
  const modelDir = dirname(model.path);
  const root = /(^|\/)onnx$/.test(modelDir) ? dirname(modelDir) : modelDir;
  const rel = (p: string): string => (root && p.startsWith(`${root}/`) ? p.slice(root.length + 1) : p);

  let config: Record<string, unknown> | undefined;
  const extra: Record<string, Uint8Array> = {};
  const configEntry =
    entries.find((e) => e.path === joinPath(root, 'config.json')) ??
    entries.find((e) => e.path === joinPath(modelDir, 'config.json')) ??
    entries
      .filter((e) => e.path === 'config.json' || e.path.endsWith('/config.json'))
      .sort((a, b) => a.path.length - b.path.length)[0];
  if (configEntry) {
    const b = await bytesOf(configEntry.file);
    config = parseConfig(b, configEntry.path);
    extra[rel(configEntry.path)] = b;
  }
  const find = async (location: string) => {
    const want = joinPath(modelDir, location);
    const base = location.split('/').pop()!;
    const e = entries.find((x) => x.path === want) ?? entries.find((x) => x.path.split('/').pop() === base);
    return e ? { path: rel(e.path), bytes: await bytesOf(e.file) } : undefined;
  };
  return finish(await bytesOf(model.file), rel(model.path), config, given, find, options, extra);
}
