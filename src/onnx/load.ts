// Loading a model from wherever the user has it: a URL of a Hugging Face style folder
// (`config.json`, `onnx/model.onnx`, `onnx/model.onnx_data` — the layout transformers.js uses), a
// URL of an .onnx file, bytes, a File, or the files of a folder picked with `webkitdirectory`; in
// Node also a file path (or `file:` URL) of such a folder or .onnx, read with node:fs, which is
// imported only there (see runtime.ts), so browser bundles hold no file-system code.
//
// Every file is read as a stream (onnx/stream.ts): the .onnx first, so external data is fetched (or
// looked up among the given files) only for the locations its initializers actually name; a
// missing one is an InputError naming both the location and a tensor stored there. Given a
// TensorSink (loadModel's GPU upload), the data of every tensor over KEEP_BYTES goes to it as it
// arrives and no file is ever held whole: the graph's large initializers then have no CPU data.
// Small tensors (shape constants, biases, norms: what specialisation reads) are always kept. The
// files are not kept either; `reread` reads them again (the merged export needs the original).

import { onnx } from 'onnx-proto';
import { FormatError, InputError } from '../errors.js';
import { DTYPES, dtypeFromOnnx } from '../ir/dtype.js';
import type { Graph } from '../ir/graph.js';
import { normLocation, urlInFolder } from '../io/location.js';
import type { Reader } from '../ops/blocks.js';
import { importNodeModule, isNode } from '../runtime.js';
import { buildGraph, checkModel, externalEntries, externalDataRefs, type ParsedModel } from './decode.js';
import type { OnnxSourceFile } from './export.js';
import { addReader, blobSource, bytesSource, readAll, readExternalStream, readModelStream, responseSource, type ByteSource, type ExternalRange, type LoadProgress, type StreamedTensors, type TensorSink } from './stream.js';

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
  /** Where the data of tensors over KEEP_BYTES goes as it streams (loadModel: the GPU); kept in memory without one. */
  readonly sink?: TensorSink;
  /** Called as bytes arrive and tensors land: for a progress bar. */
  readonly onProgress?: (progress: LoadProgress) => void;
  /** With a sink: tensors up to this many bytes stay in memory (default KEEP_BYTES). */
  readonly keepBytes?: number;
  /** In Node, file paths are read in chunks of this many bytes (default FILE_CHUNK_BYTES). */
  readonly fileChunkBytes?: number;
}

/** Tensors up to this many bytes keep their data on the CPU even with a sink (specialisation reads small ones). */
export const KEEP_BYTES = 1 << 20;

/**
 * The chunk size of file reads in Node: large enough that a read's fixed cost is lost in its copy,
 * small next to any tensor worth streaming, like the chunks of a fetch body.
 */
export const FILE_CHUNK_BYTES = 4 << 20;

export interface LoadedOnnx {
  readonly graph: Graph;
  /** The parsed config.json, when the source had one. */
  readonly config: Record<string, unknown> | undefined;
  /** Every file read, by path relative to the model folder (e.g. 'onnx/model.onnx'). */
  readonly paths: readonly string[];
  /** The .onnx's path among `paths`. */
  readonly modelPath: string;
  /** Reads the .onnx and its external data files again (from the URL, the Files, or the bytes given). */
  reread(): Promise<OnnxSourceFile>;
}

const DEFAULT_MODEL_FILES = ['onnx/model.onnx', 'model.onnx'];

async function bytesOf(d: FileData): Promise<Uint8Array> {
  if (d instanceof Uint8Array) return d;
  if (d instanceof ArrayBuffer) return new Uint8Array(d);
  return new Uint8Array(await d.arrayBuffer());
}

function sourceOf(name: string, d: FileData): ByteSource {
  if (d instanceof Uint8Array) return bytesSource(name, d);
  if (d instanceof ArrayBuffer) return bytesSource(name, new Uint8Array(d));
  return blobSource(name, d);
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

/** A URL without its query string and fragment. */
function urlPath(url: string): string {
  const cut = url.search(/[?#]/);
  return cut < 0 ? url : url.slice(0, cut);
}

/** The folder part of a URL path, as `urlInFolder` takes it: ending in '/', or '' for the page's folder. */
function folderUrl(path: string): string {
  const i = path.lastIndexOf('/');
  return i < 0 ? '' : path.slice(0, i + 1);
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
    return path === undefined ? loadFromStore(String(source), urlStore(options), given, options) : loadFromStore(path, await diskStore(options.fileChunkBytes ?? FILE_CHUNK_BYTES), given, options);
  }
  if (source instanceof Uint8Array || source instanceof ArrayBuffer) {
    return finish(sourceOf('model.onnx', source), 'model.onnx', undefined, given, async () => undefined, options);
  }
  if (isBlob(source)) {
    const name = (source as File).name || 'model.onnx';
    return finish(blobSource(name, source), name, undefined, given, async () => undefined, options);
  }
  if (Array.isArray(source) || (typeof source === 'object' && source !== null && 'length' in source)) {
    return loadFileList(Array.from(source as ArrayLike<File>), given, options);
  }
  throw new InputError('loadOnnx: the source must be a URL, bytes, a File or a list of Files');
}

/** Progress over every file of one load. */
function progressOf(report: LoadOnnxOptions['onProgress']) {
  const state = { file: '', loadedBytes: 0, totalBytes: 0 as number | undefined, tensors: 0, totalTensors: undefined as number | undefined };
  let last = 0;
  const emit = (force = false): void => {
    // At most one event per MiB of data, and one per tensor that lands.
    if (!report || (!force && state.loadedBytes - last < 1 << 20)) return;
    last = state.loadedBytes;
    report({ ...state });
  };
  return {
    file(name: string, size: number | undefined): void {
      state.file = name;
      state.totalBytes = state.totalBytes === undefined || size === undefined ? undefined : state.totalBytes + size;
    },
    bytes(n: number): void {
      state.loadedBytes += n;
      emit();
    },
    tensor(): void {
      state.tensors++;
      emit(true);
    },
    total(n: number): void {
      state.totalTensors = n;
      emit(true);
    },
  };
}

/** Reads the model (streaming large tensors to the sink), resolves and reads its external data, builds the graph. */
async function finish(
  source: ByteSource,
  modelPath: string,
  config: Record<string, unknown> | undefined,
  given: ReadonlyMap<string, FileData>,
  find: (location: string) => Promise<{ path: string; source: ByteSource } | undefined>,
  options: LoadOnnxOptions,
  extraPaths: readonly string[] = [],
): Promise<LoadedOnnx> {
  const fileName = modelPath.split('/').pop() ?? modelPath;
  const keepBytes = options.sink ? (options.keepBytes ?? KEEP_BYTES) : Infinity;
  const progress = progressOf(options.onProgress);
  progress.file(fileName, source.size);
  const { proto, streamed } = await readModelStream({ ...source, name: fileName }, { ...(options.sink ? { sink: options.sink } : {}), keepBytes, onBytes: progress.bytes, onTensor: progress.tensor });
  const parsed: ParsedModel = { ...checkModel(proto, fileName), bytes: new Uint8Array(0) };
  progress.total(parsed.proto.graph?.initializer?.length ?? 0);
  const paths = [...extraPaths, modelPath];
  const externalSources = new Map<string, ByteSource>();
  const kept = new Map<onnx.ITensorProto, Uint8Array>();
  const allStreamed: StreamedTensors = new Map(streamed);
  // How the graph reads each tensor: the sink's block layout for one over the binding limit.
  const readers = new Map<string, Reader[]>();
  for (const node of parsed.proto.graph?.node ?? []) addReader(node, readers);
  for (const ref of externalDataRefs(parsed)) {
    const base = ref.location.split('/').pop()!;
    const g = given.get(ref.location) ?? [...given].find(([k]) => k.split('/').pop() === base)?.[1];
    let found: { path: string; source: ByteSource } | undefined = g ? { path: joinPath(dirname(modelPath), ref.location), source: sourceOf(ref.location, g) } : await find(ref.location);
    if (!found) {
      throw new InputError(
        `tensor '${ref.tensor}' of ${fileName} stores its data in the external file '${ref.location}', which was not found ` +
          `(keep it next to the model, or pass it in options.externalData['${ref.location}'])`,
      );
    }
    found = { path: found.path, source: { ...found.source, name: ref.location } };
    externalSources.set(ref.location, found.source);
    paths.push(found.path);
    progress.file(ref.location, found.source.size);
    const ranges: ExternalRange[] = externalTensors(parsed, ref.location).map(({ tensor, offset, length }) => {
      const writer = length > keepBytes ? options.sink?.begin({ name: tensor.name ?? '', dataType: tensor.dataType ?? 0, dims: (tensor.dims ?? []).map(Number), byteLength: length, readers: readers.get(tensor.name ?? '') ?? [], readersOf: (v) => readers.get(v) ?? [] }) : undefined;
      if (writer) allStreamed.set(tensor, length);
      return { tensor, offset, length, ...(writer ? { writer } : {}) };
    });
    for (const [t, b] of await readExternalStream(found.source, ranges, progress.bytes, progress.tensor)) kept.set(t, b);
  }
  const sink = options.sink;
  const storageOf = sink?.storage ? (name: string) => sink.storage!(name) : undefined;
  const graph = buildGraph(parsed, {}, { ...options, streamed: allStreamed, externalTensors: kept, ...(storageOf ? { streamedStorage: storageOf } : {}) });
  const reread = async (): Promise<OnnxSourceFile> => {
    const bytes = await readAll(source);
    const externalData: Record<string, Uint8Array> = {};
    for (const [location, src] of externalSources) externalData[location] = await readAll(src);
    return { bytes, fileName, externalData };
  };
  return { graph, config, paths, modelPath, reread };
}

/** The tensors stored in one external file, with their byte ranges (offset and length checked as numbers). */
function externalTensors(parsed: ParsedModel, location: string) {
  const out: { tensor: onnx.ITensorProto; offset: number; length: number }[] = [];
  const g = parsed.proto.graph!;
  const visit = (t: onnx.ITensorProto): void => {
    if (t.dataLocation !== onnx.TensorProto.DataLocation.EXTERNAL) return;
    const e = externalEntries(t, parsed.file);
    if (e.location !== location) return;
    const n = (t.dims ?? []).reduce<number>((a, d) => a * Number(d), 1);
    const dtype = dtypeFromOnnx(t.dataType ?? 0);
    const bytes = dtype ? n * DTYPES[dtype].bytes : 0; // an unknown code is decode.ts's error to name
    out.push({ tensor: t, offset: e.offset ?? 0, length: e.length ?? bytes });
  };
  for (const t of g.initializer ?? []) visit(t);
  for (const n of g.node ?? []) for (const a of n.attribute ?? []) if (a.t) visit(a.t);
  return out;
}

/**
 * Where the files of a model live: behind URLs (fetch) or, in Node, on disk. The loader walks either
 * the same way (folder → config.json and onnx/model.onnx; an .onnx → external data beside it).
 */
interface FileStore {
  /** A file as a stream (read again when read again), or undefined when there is no such file (HTTP 404, ENOENT). */
  open(location: string, name: string): Promise<ByteSource | undefined>;
  /** Whether `location` names the model file itself rather than the folder holding it. */
  isModelFile(location: string): Promise<boolean>;
  /** The path part of a location: a URL without its query string and fragment. */
  path(location: string): string;
  /**
   * The location of `rel` (a path io/location.ts accepted, or one the loader chose) in the folder
   * `dir` (ending in '/', or '' for the current folder). It never carries a query string: a token
   * meant for one file goes to no other.
   */
  inFolder(dir: string, rel: string): string;
  /** How a file is got and why one is absent, for messages: fetch / HTTP 404, read / no such file. */
  readonly verb: 'fetch' | 'read';
  readonly absent: string;
}

function urlStore(options: LoadOnnxOptions): FileStore {
  const fetchFn = options.fetch ?? ((u: string) => globalThis.fetch(u));
  const request = async (u: string): Promise<Response | undefined> => {
    let res: Response;
    try {
      res = await fetchFn(u);
    } catch (e) {
      throw new InputError(`could not fetch ${u}: ${e instanceof Error ? e.message : String(e)}`);
    }
    if (res.status === 404) return undefined;
    if (!res.ok) throw new InputError(`could not fetch ${u}: HTTP ${res.status}`);
    return res;
  };
  return {
    path: urlPath,
    inFolder: urlInFolder,
    verb: 'fetch',
    absent: 'HTTP 404',
    isModelFile: async (url) => /\.onnx$/i.test(urlPath(url)),
    async open(u, name) {
      const res = await request(u);
      return res && responseSource(name, res, async () => (await request(u)) ?? Promise.reject(new InputError(`could not fetch ${u} again: HTTP 404`)));
    },
  };
}

/**
 * Files on disk, in Node: a folder path or the path of the .onnx itself (its name need not end in
 * .onnx). A file streams like a fetch body: positioned reads of a file handle, `chunkBytes` at a
 * time, each into a fresh array that is garbage once its bytes are on the GPU or copied (the stream
 * reader copies what it keeps), so no file is ever held whole; `reread` opens it again.
 */
async function diskStore(chunkBytes: number): Promise<FileStore> {
  if (!(Number.isSafeInteger(chunkBytes) && chunkBytes > 0)) throw new InputError(`fileChunkBytes must be a positive whole number of bytes, got ${chunkBytes}`);
  const fs = await importNodeModule('node:fs/promises');
  const code = (e: unknown): string | undefined => (e as { code?: string } | null)?.code;
  const missing = (e: unknown): boolean => code(e) === 'ENOENT' || code(e) === 'ENOTDIR';
  const failed = (path: string, e: unknown): InputError => new InputError(`could not read ${path}: ${e instanceof Error ? e.message : String(e)}`);
  return {
    path: (path) => path,
    inFolder: (dir, rel) => dir + rel,
    verb: 'read',
    absent: 'no such file',
    async isModelFile(path) {
      try {
        return (await fs.stat(path)).isFile();
      } catch (e) {
        if (missing(e)) throw new InputError(`no such file or folder: ${path}`);
        throw failed(path, e);
      }
    },
    async open(path, name) {
      let size: number;
      try {
        const st = await fs.stat(path);
        if (!st.isFile()) return undefined;
        size = st.size;
      } catch (e) {
        if (missing(e)) return undefined;
        throw failed(path, e);
      }
      return {
        name,
        size,
        async *chunks() {
          let handle;
          try {
            handle = await fs.open(path, 'r');
          } catch (e) {
            throw failed(path, e);
          }
          try {
            // Up to the size stat gave when the source was opened: a file that shrank since ends
            // early and the stream reader names the truncation; bytes appended since are not read.
            for (let at = 0; at < size; ) {
              const chunk = new Uint8Array(Math.min(chunkBytes, size - at));
              let bytesRead: number;
              try {
                ({ bytesRead } = await handle.read(chunk, 0, chunk.length, at));
              } catch (e) {
                throw failed(path, e);
              }
              if (bytesRead === 0) return;
              at += bytesRead;
              yield bytesRead === chunk.length ? chunk : chunk.subarray(0, bytesRead);
            }
          } finally {
            await handle.close();
          }
        },
      };
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
      const source = await store.open(u, 'config.json');
      return source && (await readAll(source));
    } catch {
      return undefined; // an optional file (config.json) may be absent or blocked
    }
  };

  let modelUrl: string;
  let modelPath: string;
  let source: ByteSource | undefined;
  let config: Record<string, unknown> | undefined;
  const extra: string[] = [];
  // Derived locations (config.json, onnx/model.onnx, external data) are built from the path alone:
  // the source URL's query string (a token for that one file) is never sent anywhere else.
  const readConfig = async (dir: string): Promise<void> => {
    const c = await optional(store.inFolder(dir, 'config.json'));
    if (c) {
      config = parseConfig(c, 'config.json');
      extra.push('config.json');
    }
  };
  const path = store.path(url);
  if (await store.isModelFile(url)) {
    modelUrl = url;
    const dir = folderUrl(path);
    const name = path.slice(dir.length);
    source = await store.open(url, name);
    if (!source) throw new InputError(`could not ${store.verb} ${url}: ${store.absent}`);
    modelPath = name;
    // The HF layout keeps config.json one level above onnx/.
    if (/(^|\/)onnx\/$/.test(dir)) {
      modelPath = `onnx/${name}`;
      await readConfig(dir.slice(0, -'onnx/'.length));
    }
  } else {
    const dir = path === '' || path.endsWith('/') ? path : `${path}/`;
    await readConfig(dir);
    const tried: string[] = [];
    modelUrl = '';
    modelPath = '';
    for (const candidate of options.modelFile ? [options.modelFile] : DEFAULT_MODEL_FILES) {
      const u = store.inFolder(dir, normLocation(candidate));
      tried.push(u);
      source = await store.open(u, candidate.split('/').pop()!);
      if (source) {
        modelUrl = u;
        modelPath = candidate;
        break;
      }
    }
    if (!source) throw new InputError(`no ONNX model found: tried ${tried.join(', ')} (${store.absent})`);
  }
  const modelDir = folderUrl(store.path(modelUrl));
  const find = async (location: string) => {
    const b = await store.open(store.inFolder(modelDir, location), location);
    return b ? { path: joinPath(dirname(modelPath), location), source: b } : undefined;
  };
  return finish(source, modelPath, config, given, find, options, extra);
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
  const extra: string[] = [];
  const configEntry =
    entries.find((e) => e.path === joinPath(root, 'config.json')) ??
    entries.find((e) => e.path === joinPath(modelDir, 'config.json')) ??
    entries
      .filter((e) => e.path === 'config.json' || e.path.endsWith('/config.json'))
      .sort((a, b) => a.path.length - b.path.length)[0];
  if (configEntry) {
    const b = await bytesOf(configEntry.file);
    config = parseConfig(b, configEntry.path);
    extra.push(rel(configEntry.path));
  }
  const find = async (location: string) => {
    const want = joinPath(modelDir, location);
    const base = location.split('/').pop()!;
    const e = entries.find((x) => x.path === want) ?? entries.find((x) => x.path.split('/').pop() === base);
    return e ? { path: rel(e.path), source: blobSource(location, e.file) } : undefined;
  };
  return finish(blobSource(model.file.name, model.file), rel(model.path), config, given, find, options, extra);
}
