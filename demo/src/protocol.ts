// The typed message protocol between the page (main thread) and the worker that does all model
// work. Requests carry an id; the worker answers each with exactly one `result` or `error` of the
// same id, and meanwhile may post events (training progress, streamed samples, logs).

/** The two tasks of the page, each with its own model, adapter and trainer. */
export type Task = 'spam' | 'style';

/** Training settings, from the form (or URL parameters). */
export interface TrainSettings {
  learningRate: number;
  steps: number;
  batchSize: number;
  /** The fixed padded length every batch is run at (one compiled plan for every step). */
  seqLen: number;
  /** Validation examples the accuracy is measured on (spam task); at most this many held-out windows (style task). */
  evalSize: number;
  /** Comma-separated module names; empty: the model type's PEFT defaults. */
  targetModules: string[];
  feedforwardModules: string[];
  seed: number;
}

/** Where a model comes from: the shipped one, a URL to an HF-layout folder, or the user's Files. */
export type ModelSource = { kind: 'shipped' } | { kind: 'url'; url: string } | { kind: 'files'; files: File[] };

export interface ModelInfo {
  task: Task;
  name: string;
  modelType: string | null;
  /** model.describe(): modules, ops, parameters. */
  summary: string;
  layers: number | null;
  parameters: number;
  /** PEFT's printTrainableParameters() line for the current adapter. */
  trainableLine: string;
  /** The model type's PEFT defaults (resolved config of a fresh adapter). */
  defaultTargetModules: string[];
  defaultFeedforwardModules: string[];
}

export interface DataInfo {
  task: Task;
  name: string;
  /** Spam task: examples per split. Style task: characters of text. */
  train: number;
  validation: number;
  test: number;
  labels: string[] | null;
}

export interface AccuracyResult {
  split: 'validation' | 'test';
  accuracy: number;
  loss: number;
  examples: number;
}

/** Style task: the language-model loss on the held-out end of the text (never trained on). */
export interface PerplexityResult {
  loss: number;
  perplexity: number;
  /** Held-out windows of the sequence length it was measured on. */
  windows: number;
}

export interface ClassifyResult {
  /** P(spam) with the trained adapter, and with the adapter disabled (the base model). */
  withAdapter: number;
  withoutAdapter: number;
}

export interface TrainOutcome {
  steps: number;
  reason: 'completed' | 'stopped';
  seconds: number;
}

/** The serialised error: enough for the page to say what went wrong and where. */
export interface WorkerError {
  name: string;
  code: string;
  message: string;
  /** DataFileError: the 1-based line of the data file. */
  line?: number;
}

/** Requests and the value each one resolves with. */
export interface Requests {
  /** The WebGPU device (first, so a missing WebGPU is reported before anything is downloaded). */
  device: { req: Record<string, never>; res: { adapter: string; software: boolean } };
  init: { req: { model: ModelSource; /** The page's base URL: shipped files are relative to it. */ base: string }; res: { spam: ModelInfo; style: ModelInfo; data: DataInfo[] } };
  loadModel: { req: { task: Task; source: ModelSource }; res: ModelInfo };
  loadData: { req: { task: Task; name: string; content: string }; res: DataInfo };
  evaluate: { req: { settings: TrainSettings; split: 'validation' | 'test' }; res: AccuracyResult };
  /**
   * Spam: a fresh adapter from the settings, trained (validation accuracy before and after as
   * events); style: the same on the first 90% of the chosen text's tokens (held-out perplexity of
   * the last 10% before and after as events).
   */
  train: { req: { task: Task; settings: TrainSettings }; res: TrainOutcome };
  /** Continues a stopped run (same optimizer state and data position). */
  resume: { req: { task: Task }; res: TrainOutcome };
  classify: { req: { text: string; settings: TrainSettings }; res: ClassifyResult };
  /** 'before': the base model (adapter disabled); 'after': with the trained adapter. */
  generate: { req: { prompt: string; tokens: number; settings: TrainSettings; which: 'before' | 'after' }; res: { text: string } };
  setStyleText: { req: { text: string; name: string }; res: DataInfo };
  downloadAdapter: { req: { task: Task }; res: { files: { 'adapter_model.safetensors': Uint8Array; 'adapter_config.json': string } } };
  loadAdapter: { req: { files: File[] }; res: { task: Task; trainableLine: string } };
}

export type RequestType = keyof Requests;

export type Request = { [K in RequestType]: { id: number; type: K } & Requests[K]['req'] }[RequestType];

/** Stop needs no answer: it only asks the running `train` to return after its current step. */
export interface StopMessage {
  type: 'stop';
}

/** A batch of training steps, posted at most every ~100 ms so the page renders a few per second. */
export interface ProgressEvent {
  type: 'progress';
  task: Task;
  /** [step, loss] pairs since the previous event. */
  points: [number, number][];
  step: number;
  totalSteps: number;
  stepsPerSecond: number;
  /** Seconds left at the current speed. */
  eta: number;
}

/** A phase of a long request, for the status line ("evaluating before training", …). */
export interface PhaseEvent {
  type: 'phase';
  task: Task;
  text: string;
}

export interface AccuracyEvent {
  type: 'accuracy';
  phase: 'before' | 'after';
  result: AccuracyResult;
}

export interface PerplexityEvent {
  type: 'perplexity';
  phase: 'before' | 'after';
  result: PerplexityResult;
}

/** Generated text so far (samples stream token by token). */
export interface SampleEvent {
  type: 'sample';
  which: 'before' | 'after';
  text: string;
  done: boolean;
}

export type WorkerEvent = ProgressEvent | PhaseEvent | AccuracyEvent | PerplexityEvent | SampleEvent;

export type Response =
  | { type: 'result'; id: number; value: unknown }
  | { type: 'error'; id: number; error: WorkerError };

export type FromWorker = Response | WorkerEvent;
export type ToWorker = Request | StopMessage;
