// Moving an adapter's two files (adapter_model.safetensors + adapter_config.json) between the page
// and the user: downloading them, picking them from a folder, fetching them from a URL folder.
// The files are returned exactly as `saveAdapter` writes them, so `loadAdapter` reads the result.

import { InputError } from '../errors.js';
import { ADAPTER_CONFIG, ADAPTER_WEIGHTS, type AdapterFiles } from './adapter.js';

export interface DownloadAdapterOptions {
  /** Prepended to each file name, e.g. 'my-task-' → 'my-task-adapter_config.json'. */
  readonly prefix?: string;
}

/**
 * Offers the adapter's two files as downloads (one `<a download>` click per file, from a Blob
 * object URL). Browser only. Returns the file names used.
 */
export function downloadAdapter(files: AdapterFiles, { prefix = '' }: DownloadAdapterOptions = {}): string[] {
  if (typeof document === 'undefined' || typeof URL.createObjectURL !== 'function') {
    throw new InputError('downloadAdapter needs a browser page (document and URL.createObjectURL)');
  }
  if (/[/\\]/.test(prefix)) throw new InputError(`downloadAdapter: prefix '${prefix}' must not contain a path separator`);
  const weights = files[ADAPTER_WEIGHTS];
  const config = files[ADAPTER_CONFIG];
  if (!(weights instanceof Uint8Array)) throw new InputError(`downloadAdapter: '${ADAPTER_WEIGHTS}' must be a Uint8Array`);
  if (typeof config !== 'string') throw new InputError(`downloadAdapter: '${ADAPTER_CONFIG}' must be a string`);
  // Blob parts must be ArrayBuffer-backed views; copy when the bytes live in a SharedArrayBuffer.
  const bytes = weights.buffer instanceof ArrayBuffer ? (weights as Uint8Array<ArrayBuffer>) : new Uint8Array(weights);
  const blobs: [string, Blob][] = [
    [`${prefix}${ADAPTER_WEIGHTS}`, new Blob([bytes], { type: 'application/octet-stream' })],
    [`${prefix}${ADAPTER_CONFIG}`, new Blob([config], { type: 'application/json' })],
  ];
  for (const [name, blob] of blobs) {
    const url = URL.createObjectURL(blob);
    const a = document.createElement('a');
    a.href = url;
    a.download = name;
    a.style.display = 'none';
    document.body.appendChild(a);
    try {
      a.click();
    } finally {
      a.remove();
      // Revoking right after click() can cancel the download in some browsers: let it start first.
      setTimeout(() => URL.revokeObjectURL(url), 1000);
    }
  }
  return blobs.map(([name]) => name);
}

function relativePath(f: File): string {
  return ((f as File & { webkitRelativePath?: string }).webkitRelativePath || f.name).replace(/\\/g, '/');
}

/**
 * Reads an adapter from picked files (an `<input type=file multiple>` or a `webkitdirectory`
 * folder): finds `adapter_model.safetensors` and `adapter_config.json` by name anywhere in the
 * folder. When a name occurs more than once, the pair in the same folder (then the shallowest) wins.
 */
export async function adapterFilesFromFileList(files: FileList | readonly File[]): Promise<AdapterFiles> {
  const list = Array.from(files as ArrayLike<File>);
  const named = (name: string) =>
    list
      .map((file) => ({ file, path: relativePath(file) }))
      .filter((e) => e.path === name || e.path.endsWith(`/${name}`))
      .sort((a, b) => a.path.split('/').length - b.path.split('/').length || a.path.localeCompare(b.path));
  const weights = named(ADAPTER_WEIGHTS);
  const configs = named(ADAPTER_CONFIG);
  const missing = [weights.length === 0 ? ADAPTER_WEIGHTS : null, configs.length === 0 ? ADAPTER_CONFIG : null].filter((x): x is string => x !== null);
  if (missing.length > 0) {
    const seen = list.slice(0, 20).map((f) => `'${relativePath(f)}'`).join(', ') + (list.length > 20 ? `, … (${list.length} files)` : '');
    throw new InputError(`the picked files lack ${missing.join(' and ')} (got ${list.length === 0 ? 'no files' : seen})`);
  }
  const dir = (p: string): string => p.slice(0, Math.max(0, p.lastIndexOf('/')));
  const w = weights[0]!;
  const c = configs.find((e) => dir(e.path) === dir(w.path)) ?? configs[0]!;
  return {
    [ADAPTER_WEIGHTS]: new Uint8Array(await w.file.arrayBuffer()),
    [ADAPTER_CONFIG]: await c.file.text(),
  };
}

export interface FetchAdapterOptions {
  /** fetch used for the requests (default: globalThis.fetch); injectable for tests and custom auth. */
  readonly fetch?: (url: string) => Promise<Response>;
}

/** Joins a file name to a folder URL, keeping its query string (signed URLs). */
function fileUrl(folder: string, name: string): string {
  const cut = folder.search(/[?#]/);
  const path = cut < 0 ? folder : folder.slice(0, cut);
  return `${path.replace(/\/+$/, '')}/${name}${cut < 0 ? '' : folder.slice(cut)}`;
}

/**
 * Fetches an adapter saved by PEFT (or `saveAdapter`) from a folder URL, e.g. a Hugging Face
 * `resolve/main/` folder: both files, in parallel. A failed request is an InputError naming the URL
 * and the HTTP status.
 */
export async function fetchAdapter(folderUrl: string | URL, options: FetchAdapterOptions = {}): Promise<AdapterFiles> {
  const fetchFn = options.fetch ?? ((u: string) => globalThis.fetch(u));
  const get = async (name: string): Promise<Response> => {
    const url = fileUrl(String(folderUrl), name);
    let res: Response;
    try {
      res = await fetchFn(url);
    } catch (e) {
      throw new InputError(`could not fetch ${url}: ${e instanceof Error ? e.message : String(e)}`);
    }
    if (!res.ok) throw new InputError(`could not fetch ${url}: HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ''}`);
    return res;
  };
  const [weights, config] = await Promise.all([get(ADAPTER_WEIGHTS), get(ADAPTER_CONFIG)]);
  return {
    [ADAPTER_WEIGHTS]: new Uint8Array(await weights.arrayBuffer()),
    [ADAPTER_CONFIG]: await config.text(),
  };
}
