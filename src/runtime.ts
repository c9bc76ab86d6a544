// The JavaScript runtime the library finds itself in, and Node's built-in modules, loaded only there.
//
// The browser bundle must carry no file-system code and no import a bundler would try to resolve:
// Node modules are imported dynamically, through a specifier held in a variable (bundlers leave such
// an import alone: Vite by `@vite-ignore`, webpack by `webpackIgnore`), and only after `isNode()`.

interface NodeProcess {
  versions?: { node?: string };
  platform?: string;
}

/** True in Node (and runtimes that implement Node's built-ins: Deno, Bun, Electron's main process). */
export function isNode(): boolean {
  const p = (globalThis as { process?: NodeProcess }).process;
  return typeof p?.versions?.node === 'string';
}

/** The parts of `node:fs/promises` the loader uses (declared here: the browser build has no Node types). */
export interface NodeFs {
  readFile(path: string): Promise<Uint8Array>;
  stat(path: string): Promise<{ isDirectory(): boolean; isFile(): boolean }>;
}

/** The parts of `node:url` the loader uses. */
export interface NodeUrl {
  fileURLToPath(url: string): string;
}

/** `node:fs/promises` or `node:url`, imported at run time in Node only. */
export async function importNodeModule(name: 'node:fs/promises'): Promise<NodeFs>;
export async function importNodeModule(name: 'node:url'): Promise<NodeUrl>;
export async function importNodeModule(name: string): Promise<unknown> {
  const specifier = name;
  return import(/* @vite-ignore */ /* webpackIgnore: true */ specifier);
}
