// The page's side of the worker protocol: typed requests that resolve with the worker's answer
// (or reject with its serialised error), and a listener for the events it posts meanwhile.
import type { FromWorker, Requests, RequestType, ToWorker, WorkerError, WorkerEvent } from './protocol.js';

/** An error raised in the worker, with the library's name and code (and a data file's line). */
export class WorkerFailure extends Error {
  readonly code: string;
  readonly line: number | undefined;
  readonly recovered: boolean;
  constructor(e: WorkerError) {
    super(e.message);
    this.name = e.name;
    this.code = e.code;
    this.line = e.line;
    this.recovered = e.recovered ?? false;
  }
}

export class WorkerClient {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: unknown) => void }>();
  private readonly listeners = new Set<(e: WorkerEvent) => void>();

  constructor(private readonly worker: Worker) {
    worker.onmessage = (ev: MessageEvent<FromWorker>) => {
      const m = ev.data;
      if (m.type === 'result' || m.type === 'error') {
        const p = this.pending.get(m.id);
        this.pending.delete(m.id);
        if (m.type === 'result') p?.resolve(m.value);
        else p?.reject(new WorkerFailure(m.error));
        return;
      }
      for (const l of this.listeners) l(m);
    };
    worker.onerror = (ev) => {
      // A worker that failed to start (or crashed) fails every request in flight.
      const failure = new WorkerFailure({ name: 'WorkerError', code: 'WORKER', message: ev.message || 'the worker stopped' });
      for (const p of this.pending.values()) p.reject(failure);
      this.pending.clear();
    };
  }

  request<K extends RequestType>(type: K, req: Requests[K]['req']): Promise<Requests[K]['res']> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.worker.postMessage({ id, type, ...req } as ToWorker);
    });
  }

  stop(): void {
    this.worker.postMessage({ type: 'stop' } satisfies ToWorker);
  }

  /** Only honoured by a worker started under `?debug`: destroys its WebGPU device (end-to-end tests). */
  debugLoseDevice(): void {
    this.worker.postMessage({ type: 'debugLoseDevice' } satisfies ToWorker);
  }

  onEvent(listener: (e: WorkerEvent) => void): void {
    this.listeners.add(listener);
  }
}
