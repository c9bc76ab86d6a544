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
  /** Parameters of the model itself (as the summary counts them: the adapter not included). */
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

/** Accuracy, and precision and recall of the spam class, of one classifier on one split. */
export interface Scores {
  accuracy: number;
  precision: number;
  recall: number;
  /** Examples scored. */
  examples: number;
}

export interface AccuracyResult extends Scores {
  split: 'validation' | 'test';
  loss: number;
  /** Examples of the split (or subset) asked for; `examples` < `total` when Stop cut it short. */
  total: number;
  stopped: boolean;
  /** Wall time of the measurement. */
  seconds: number;
}

/** The naive-Bayes baseline, trained on the training split, scored on the same mails as the model. */
export interface BaselineResult {
  validation: Scores;
  test: Scores;
  /** Wall time of training it, milliseconds. */
  trainMs: number;
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
  /** Training time of the whole run so far (a resumed run adds to its earlier parts). */
  seconds: number;
  /** Whether Resume can continue it (not when Stop came before training began). */
  resumable: boolean;
  /** PEFT's printTrainableParameters() line for the adapter the run trained. */
  trainableLine: string;
}

/** A run whose checkpoint survived a reload of the page (Origin Private File System). */
export interface InterruptedRun {
  task: Task;
  /** The checkpoint's step, and the run's length. */
  step: number;
  totalSteps: number;
  settings: TrainSettings;
  /** The data it trains on (spam: the data set's name; style: the text's name). */
  dataName: string;
}

/** The serialised error: enough for the page to say what went wrong and where. */
export interface WorkerError {
  name: string;
  code: string;
  message: string;
  /** DataFileError: the 1-based line of the data file. */
  line?: number;
  /** DeviceLostError (whose message is the device's reason): whether the worker has a new device and the models loaded again. */
  recovered?: boolean;
}

/** Requests and the value each one resolves with. */
export interface Requests {
  /** The WebGPU device (first, so a missing WebGPU is reported before anything is downloaded). */
  device: { req: Record<string, never>; res: { adapter: string; software: boolean } };
  init: { req: { model: ModelSource; /** The page's base URL: shipped files are relative to it. */ base: string; /** `?debug`: honour DebugMessage. */ debug: boolean }; res: { spam: ModelInfo; style: ModelInfo; data: DataInfo[] } };
  loadModel: { req: { task: Task; source: ModelSource }; res: ModelInfo };
  loadData: { req: { task: Task; name: string; content: string }; res: DataInfo };
  /** The baseline on the validation subset of `evalSize` mails and on the test split. */
  baseline: { req: { evalSize: number }; res: BaselineResult };
  /** Accuracy of the current adapter, with progress events; Stop ends it early (`stopped`). */
  evaluate: { req: { settings: TrainSettings; split: 'validation' | 'test' }; res: AccuracyResult };
  /**
   * Spam: a fresh adapter from the settings, trained (validation accuracy before and after as
   * events); style: the same on the first 90% of the chosen text's tokens (held-out perplexity of
   * the last 10% before and after as events).
   */
  train: { req: { task: Task; settings: TrainSettings }; res: TrainOutcome };
  /** Continues a stopped run (same optimizer state and data position). */
  resume: { req: { task: Task }; res: TrainOutcome };
  /** The runs a reload interrupted, each from its last checkpoint (none: an empty list). */
  interrupted: { req: Record<string, never>; res: InterruptedRun[] };
  /** Continues an interrupted run from its checkpoint, on the data and settings it was started with. */
  resumeInterrupted: { req: { task: Task }; res: TrainOutcome };
  /** Deletes an interrupted run's checkpoint (the user declined to resume it). */
  discardInterrupted: { req: { task: Task }; res: null };
  /** At the trained adapter's sequence length (`seqLen` before any training). */
  classify: { req: { text: string; seqLen: number }; res: ClassifyResult };
  /** 'before': the base model (adapter disabled); 'after': with the trained adapter. */
  generate: { req: { prompt: string; tokens: number; settings: TrainSettings; which: 'before' | 'after' }; res: { text: string } };
  /** Checks at once that the text is long enough to train on and to hold out at `seqLen`. */
  setStyleText: { req: { text: string; name: string; seqLen: number }; res: DataInfo };
  downloadAdapter: { req: { task: Task }; res: { files: { 'adapter_model.safetensors': Uint8Array; 'adapter_config.json': string } } };
  loadAdapter: { req: { files: File[] }; res: { task: Task; trainableLine: string } };
}

export type RequestType = keyof Requests;

export type Request = { [K in RequestType]: { id: number; type: K } & Requests[K]['req'] }[RequestType];

/** Stop needs no answer: it asks the running training or evaluation to return after its current batch. */
export interface StopMessage {
  type: 'stop';
}

/**
 * Only under the page's `?debug` flag (the end-to-end test): destroys the WebGPU device now, in the
 * middle of whatever runs, as a driver reset or a lost GPU would.
 */
export interface DebugMessage {
  type: 'debugLoseDevice';
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

/** Evaluation under way: mails classified so far (a few updates a second at most). */
export interface EvalProgressEvent {
  type: 'evalProgress';
  /** What is measured, for the status line ("validation accuracy before training", "test accuracy"). */
  what: string;
  split: 'validation' | 'test';
  done: number;
  total: number;
  /** Seconds left at the current speed. */
  eta: number;
}

/**
 * A model loading (init, loadModel, or the reload after a lost device): what loadModel's onProgress
 * last reported, at most every ~100 ms, then once with `done` when the load ends (or fails).
 */
export interface LoadProgressEvent {
  type: 'loadProgress';
  task: Task;
  /** The file being read. */
  file: string;
  loadedBytes: number;
  /** null: a size not known (a response without Content-Length). */
  totalBytes: number | null;
  tensors: number;
  /** null until the .onnx has been read. */
  totalTensors: number | null;
  done: boolean;
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

/** A checkpoint of the running training was saved (a reload or a lost device resumes from it). */
export interface CheckpointSavedEvent {
  type: 'checkpoint';
  task: Task;
  step: number;
}

/**
 * The GPU device was lost during training and the worker recovered: a new device, the models
 * loaded again, the run resumed from its last checkpoint. The steps after it are done again.
 */
export interface RecoveredEvent {
  type: 'recovered';
  task: Task;
  /** The last step reported before the loss, and the checkpoint step the run resumes from. */
  lostAt: number;
  resumedFrom: number;
  redone: number;
  /** The device's reason ('destroyed', 'unknown'). */
  reason: string;
}

export type WorkerEvent = ProgressEvent | EvalProgressEvent | LoadProgressEvent | PhaseEvent | AccuracyEvent | PerplexityEvent | SampleEvent | CheckpointSavedEvent | RecoveredEvent;

export type Response =
  | { type: 'result'; id: number; value: unknown }
  | { type: 'error'; id: number; error: WorkerError };

export type FromWorker = Response | WorkerEvent;
export type ToWorker = Request | StopMessage | DebugMessage;
