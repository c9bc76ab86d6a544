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
  stat(path: string): Promise<{ isDirectory(): boolean; isFile(): boolean; size: number }>;
  open(path: string, flags: 'r'): Promise<NodeFileHandle>;
}

/** The parts of node:fs's FileHandle the loader uses: positioned reads into a caller's buffer. */
export interface NodeFileHandle {
  read(buffer: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
  close(): Promise<void>;
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

// ---- Waiting for GPU work in Node ----
//
// Dawn's Node binding settles its promises (mapAsync, onSubmittedWorkDone, popErrorScope, async
// pipelines) by calling the instance's ProcessEvents from a `setImmediate` callback that re-queues
// itself for as long as any promise is pending: a busy loop that keeps one CPU core at 100% for the
// whole wait. On a GPU that core is idle anyway; on a software adapter (SwiftShader, whose workers
// are CPU threads of this same process) or a machine with few cores, the loop takes CPU time from
// the work being waited for: SwiftShader's copy kernel ran 2–4× slower in Node than in Chromium (whose
// GPU process waits on a fence, not in a loop) on a busy 2-core machine, and the same with the loop
// throttled (tests/bench/poll-probe.mjs reproduces it). Browsers need none of this.
//
// So, in Node, while a GPU promise is pending, one extra immediate shares the loop: after the first
// millisecond of a wait it sleeps the event loop (Atomics.wait, a futex: no CPU) for POLL_SLEEP_MS
// between turns, which bounds the binding's polling to about one ProcessEvents call per
// millisecond. A wait shorter than a millisecond is not slowed; a longer one settles at most
// POLL_SLEEP_MS late. I/O callbacks still run every turn. One sleeper serves all concurrent waits.

const POLL_SPIN_MS = 1;
const POLL_SLEEP_MS = 1;
let pendingWaits = 0;
let waitsSince = 0;
let sleeperRunning = false;
let sleepCell: Int32Array | undefined;

interface NodeTimers {
  setImmediate(callback: () => void): unknown;
}

/** Whether GPU waits should throttle the event loop here (Node with setImmediate and Atomics.wait). */
function throttlesPolling(): boolean {
  return isNode() && typeof (globalThis as Partial<NodeTimers>).setImmediate === 'function' && typeof SharedArrayBuffer === 'function';
}

/**
 * Resolves or rejects as `pending` does. In Node, keeps Dawn's polling from spinning a core while
 * it is pending (see above); elsewhere returns `pending` itself. Wrap every wait for GPU work.
 */
export function awaitGpu<T>(pending: Promise<T>): Promise<T> {
  if (!throttlesPolling()) return pending;
  if (pendingWaits++ === 0) waitsSince = performance.now();
  if (!sleeperRunning) startSleeper();
  return pending.finally(() => {
    pendingWaits--;
  });
}

function startSleeper(): void {
  const { setImmediate } = globalThis as unknown as NodeTimers;
  const cell = (sleepCell ??= new Int32Array(new SharedArrayBuffer(4)));
  sleeperRunning = true;
  const turn = (): void => {
    if (pendingWaits === 0) {
      sleeperRunning = false;
      return;
    }
    // Nothing ever notifies the cell: the wait always runs to its timeout.
    if (performance.now() - waitsSince > POLL_SPIN_MS) Atomics.wait(cell, 0, 0, POLL_SLEEP_MS);
    setImmediate(turn);
  };
  setImmediate(turn);
}
