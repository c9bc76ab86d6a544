// IA3Config: Hugging Face PEFT's IA3 configuration, with PEFT's semantics and file format.
//
// Mirrors `IA3Config` (peft/tuners/ia3/config.py) and its bases `PeftConfig`/`PeftConfigMixin`
// (peft/config.py), PEFT 0.20:
//   - list-valued `target_modules`, `exclude_modules`, `feedforward_modules` become sets (PEFT's
//     __post_init__); a string stays a regex; `modules_to_save` stays a list (duplicates kept);
//   - when both are sets, feed-forward modules must be a subset of target modules (PEFT's error);
//   - `task_type` must be one of PEFT's TaskType values (PEFT's error);
//   - null target / feed-forward modules are filled from PEFT's per-model-type tables
//     (peft/utils/constants.py) by `resolveForModelType`, exactly as IA3Model._prepare_adapter_config
//     does — by attribute assignment, so without re-running the subset check.
// Invariants: an instance is immutable and always valid; every change returns a new instance.
//
// adapter_config.json is written as PEFT writes it: `json.dumps(asdict(config), indent=2,
// sort_keys=True)` with sets turned into lists. PEFT writes `list(set)`, whose order depends on
// Python's per-process string hashing; we write sets sorted (by code point, Python's str order) so
// our files are deterministic. Parsing is strict: bounded size, typed errors naming the field,
// unknown fields ignored but listed (PEFT drops them with a warning for forward compatibility).
//
// Size: it mirrors one PEFT class: IA3Config's fields, PEFT's per-model-type default tables,
// validation, and its JSON form.

import { FormatError, InputError } from '../errors.js';
import { MAX_CONFIG_BYTES } from '../io/adapter.js';
import { compareCodePoints, pythonJsonDumps, type JsonValue } from '../io/python.js';

/** PEFT's TaskType values, in PEFT's enum order (used in its error message). */
export const TASK_TYPES = ['SEQ_CLS', 'SEQ_2_SEQ_LM', 'CAUSAL_LM', 'TOKEN_CLS', 'QUESTION_ANS', 'FEATURE_EXTRACTION'] as const;
/** A PEFT task type. */
export type TaskType = (typeof TASK_TYPES)[number];

/** The `target_modules` shorthand for every linear layer except the output head. */
export const ALL_LINEAR = 'all-linear';

/**
 * The PEFT release whose format and semantics this module follows. Written as `peft_version` when
 * a config does not carry one: PEFT (≥ 0.18) fills a missing version with its own the same way.
 */
export const PEFT_VERSION = '0.20.0';

function table(entries: Record<string, readonly string[]>): Readonly<Record<string, readonly string[]>> {
  const t = Object.create(null) as Record<string, readonly string[]>;
  for (const [k, v] of Object.entries(entries)) t[k] = Object.freeze([...v]);
  return Object.freeze(t);
}

/** PEFT's TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING (peft/utils/constants.py, 0.20). */
export const IA3_TARGET_MODULES_BY_MODEL_TYPE = table({
  t5: ['k', 'v', 'wo'],
  mt5: ['k', 'v', 'wi_1'],
  gpt2: ['c_attn', 'mlp.c_proj'],
  bloom: ['query_key_value', 'mlp.dense_4h_to_h'],
  roberta: ['key', 'value', 'output.dense'],
  opt: ['q_proj', 'k_proj', 'fc2'],
  gptj: ['q_proj', 'v_proj', 'fc_out'],
  gpt_neox: ['query_key_value', 'dense_4h_to_h'],
  gpt_neo: ['q_proj', 'v_proj', 'c_proj'],
  bart: ['q_proj', 'v_proj', 'fc2'],
  gpt_bigcode: ['c_attn', 'mlp.c_proj'],
  llama: ['k_proj', 'v_proj', 'down_proj'],
  llama4: ['q_proj', 'v_proj', 'down_proj'],
  mistral: ['k_proj', 'v_proj', 'down_proj'],
  mixtral: ['k_proj', 'v_proj', 'w2'],
  bert: ['key', 'value', 'output.dense'],
  'deberta-v2': ['key_proj', 'value_proj', 'output.dense'],
  deberta: ['in_proj', 'output.dense'],
  RefinedWebModel: ['query_key_value', 'dense_4h_to_h'],
  RefinedWeb: ['query_key_value', 'dense_4h_to_h'],
  falcon: ['query_key_value', 'dense_4h_to_h'],
  phi: ['q_proj', 'v_proj', 'fc2'],
  gemma: ['q_proj', 'v_proj', 'down_proj'],
  gemma2: ['q_proj', 'v_proj', 'down_proj'],
  gemma3_text: ['q_proj', 'v_proj', 'down_proj'],
  qwen2: ['q_proj', 'v_proj', 'down_proj'],
  qwen3: ['q_proj', 'v_proj', 'down_proj'],
});

/** PEFT's TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING (peft/utils/constants.py, 0.20). */
export const IA3_FEEDFORWARD_MODULES_BY_MODEL_TYPE = table({
  t5: ['wo'],
  mt5: [],
  gpt2: ['mlp.c_proj'],
  bloom: ['mlp.dense_4h_to_h'],
  roberta: ['output.dense'],
  opt: ['fc2'],
  gptj: ['fc_out'],
  gpt_neox: ['dense_4h_to_h'],
  gpt_neo: ['c_proj'],
  bart: ['fc2'],
  gpt_bigcode: ['mlp.c_proj'],
  llama: ['down_proj'],
  llama4: ['down_proj'],
  mistral: ['down_proj'],
  mixtral: ['w2'],
  bert: ['output.dense'],
  'deberta-v2': ['output.dense'],
  deberta: ['output.dense'],
  RefinedWeb: ['dense_4h_to_h'],
  RefinedWebModel: ['dense_4h_to_h'],
  falcon: ['dense_4h_to_h'],
  phi: ['fc2'],
  gemma: ['down_proj'],
  gemma2: ['down_proj'],
  gemma3_text: ['down_proj'],
  qwen2: ['down_proj'],
  qwen3: ['down_proj'],
});

// Modules PEFT's task wrappers append to `modules_to_save` (PeftModelForSequenceClassification,
// ...ForTokenClassification: classifier and score; ...ForQuestionAnswering: qa_outputs).
const TASK_MODULES_TO_SAVE: Partial<Record<TaskType, readonly string[]>> = {
  SEQ_CLS: ['classifier', 'score'],
  TOKEN_CLS: ['classifier', 'score'],
  QUESTION_ANS: ['qa_outputs'],
};

/**
 * Module selection as stored: a set of names (list semantics), a regex string, or null (not given,
 * resolved later from the model type).
 */
export type ModuleSelection = ReadonlySet<string> | string | null;

/** Constructor options: PEFT's IA3Config fields in camelCase. Lists may be arrays or sets. */
export interface IA3ConfigOptions {
  /** Names (exact path or `.name` suffix), a Python regex (full match), 'all-linear', or null. */
  targetModules?: readonly string[] | ReadonlySet<string> | string | null;
  /** Excluded even when targeted; same matching rules as targetModules. */
  excludeModules?: readonly string[] | ReadonlySet<string> | string | null;
  /** Modules whose vector scales the input; names match by plain suffix, a string by full match. */
  feedforwardModules?: readonly string[] | ReadonlySet<string> | string | null;
  /** Modules trained in full and saved besides the IA3 vectors. */
  modulesToSave?: readonly string[] | null;
  /** true (default): vectors start at 1; false: random normal (tests only). */
  initIa3Weights?: boolean;
  /** Weight stored as (in, out), as GPT-2's Conv1D; PEFT forces it true for Conv1D layers. */
  fanInFanOut?: boolean;
  taskType?: TaskType | null;
  baseModelNameOrPath?: string | null;
  revision?: string | null;
  /** PEFT saves adapters with inference_mode true. */
  inferenceMode?: boolean;
  /** PEFT writes {base_model_class, parent_library} here when task_type is null. */
  autoMapping?: { readonly [key: string]: JsonValue } | null;
  /** null or absent: PEFT_VERSION (PEFT fills its own version the same way). */
  peftVersion?: string | null;
}

/** The adapter_config.json object PEFT 0.20 writes for IA3 (keys in sorted order). */
export interface AdapterConfigJson {
  auto_mapping: { [key: string]: JsonValue } | null;
  base_model_name_or_path: string | null;
  exclude_modules: string[] | string | null;
  fan_in_fan_out: boolean;
  feedforward_modules: string[] | string | null;
  inference_mode: boolean;
  init_ia3_weights: boolean;
  modules_to_save: string[] | null;
  peft_type: 'IA3';
  peft_version: string;
  revision: string | null;
  target_modules: string[] | string | null;
  task_type: TaskType | null;
}

// Fields of the JSON file and the option each maps to, with the check applied to both.
type Kind = 'modules' | 'list' | 'bool' | 'string' | 'task' | 'object';
const FIELDS: readonly (readonly [json: keyof AdapterConfigJson, option: keyof IA3ConfigOptions, kind: Kind])[] = [
  ['auto_mapping', 'autoMapping', 'object'],
  ['base_model_name_or_path', 'baseModelNameOrPath', 'string'],
  ['exclude_modules', 'excludeModules', 'modules'],
  ['fan_in_fan_out', 'fanInFanOut', 'bool'],
  ['feedforward_modules', 'feedforwardModules', 'modules'],
  ['inference_mode', 'inferenceMode', 'bool'],
  ['init_ia3_weights', 'initIa3Weights', 'bool'],
  ['modules_to_save', 'modulesToSave', 'list'],
  ['peft_version', 'peftVersion', 'string'],
  ['revision', 'revision', 'string'],
  ['target_modules', 'targetModules', 'modules'],
  ['task_type', 'taskType', 'task'],
];

// `field` null: the detail is a complete message of its own (PEFT's wording).
type MakeError = (field: string | null, detail: string) => Error;
const optionError: MakeError = (field, detail) => new InputError(field === null ? detail : `IA3Config: ${field} ${detail}`);

// Hidden construction flags: only this module can set them.
const SKIP_SUBSET_CHECK = Symbol('skipSubsetCheck');
const UNKNOWN_FIELDS = Symbol('unknownFields');
const MAKE_ERROR = Symbol('makeError');
interface InternalOptions extends IA3ConfigOptions {
  [SKIP_SUBSET_CHECK]?: boolean;
  [UNKNOWN_FIELDS]?: readonly string[];
  [MAKE_ERROR]?: MakeError;
}

/** PEFT's IA3 configuration. Immutable; see the module header for the semantics. */
export class IA3Config {
  readonly peftType = 'IA3' as const;
  readonly targetModules: ModuleSelection;
  readonly excludeModules: ModuleSelection;
  readonly feedforwardModules: ModuleSelection;
  readonly modulesToSave: readonly string[] | null;
  readonly initIa3Weights: boolean;
  readonly fanInFanOut: boolean;
  readonly taskType: TaskType | null;
  readonly baseModelNameOrPath: string | null;
  readonly revision: string | null;
  readonly inferenceMode: boolean;
  readonly autoMapping: { readonly [key: string]: JsonValue } | null;
  readonly peftVersion: string;
  /** Fields of the parsed adapter_config.json this version does not know (sorted); for warnings. */
  readonly unknownFields: readonly string[];

  /** Validates like PEFT's __post_init__; invalid options throw InputError with PEFT's message. */
  constructor(options: IA3ConfigOptions = {}) {
    const internal = options as InternalOptions;
    const err = internal[MAKE_ERROR] ?? optionError;
    const o: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
    for (const [json, option, kind] of FIELDS) {
      const v: unknown = options[option];
      if (v !== undefined) {
        o[option] = checkField(v, kind, (detail, plain) => err(plain ? null : err === optionError ? option : json, detail));
      }
    }
    this.targetModules = (o.targetModules as ModuleSelection | undefined) ?? null;
    this.excludeModules = (o.excludeModules as ModuleSelection | undefined) ?? null;
    this.feedforwardModules = (o.feedforwardModules as ModuleSelection | undefined) ?? null;
    this.modulesToSave = (o.modulesToSave as readonly string[] | undefined) ?? null;
    this.initIa3Weights = (o.initIa3Weights as boolean | undefined) ?? true;
    this.fanInFanOut = (o.fanInFanOut as boolean | undefined) ?? false;
    this.taskType = (o.taskType as TaskType | undefined) ?? null;
    this.baseModelNameOrPath = (o.baseModelNameOrPath as string | undefined) ?? null;
    this.revision = (o.revision as string | undefined) ?? null;
    this.inferenceMode = (o.inferenceMode as boolean | undefined) ?? false;
    this.autoMapping = (o.autoMapping as IA3Config['autoMapping'] | undefined) ?? null;
    this.peftVersion = (o.peftVersion as string | undefined) ?? PEFT_VERSION;
    this.unknownFields = Object.freeze([...(internal[UNKNOWN_FIELDS] ?? [])]);

    if (!internal[SKIP_SUBSET_CHECK]) {
      const t = this.targetModules;
      const f = this.feedforwardModules;
      if (t instanceof Set && f instanceof Set && ![...f].every((m) => t.has(m))) {
        throw err(null, '`feedforward_modules` should be a subset of `target_modules`'); // PEFT's message
      }
    }
    Object.freeze(this);
  }

  /** True when targetModules is PEFT's 'all-linear' shorthand (case-insensitive, as PEFT). */
  get isAllLinear(): boolean {
    return typeof this.targetModules === 'string' && this.targetModules.toLowerCase() === ALL_LINEAR;
  }

  /**
   * A copy with some fields changed, like setting attributes on PEFT's config object: values are
   * type-checked but the subset check of the constructor is not re-run (PEFT does not either).
   */
  with(changes: IA3ConfigOptions): IA3Config {
    const options: InternalOptions = { ...this.options(), ...changes };
    options[SKIP_SUBSET_CHECK] = true;
    options[UNKNOWN_FIELDS] = this.unknownFields;
    return new IA3Config(options);
  }

  /**
   * Fills null target / feed-forward modules from PEFT's tables for a Hugging Face `model_type`,
   * as PEFT's IA3Model._prepare_adapter_config. An unknown type throws PEFT's messages:
   * "Please specify `target_modules` in `peft_config`" (or `feedforward_modules`).
   */
  resolveForModelType(modelType: string): IA3Config {
    let target = this.targetModules;
    let feedforward = this.feedforwardModules;
    if (target === null) {
      if (!Object.hasOwn(IA3_TARGET_MODULES_BY_MODEL_TYPE, modelType)) {
        throw new InputError(`Please specify \`target_modules\` in \`peft_config\` (model_type ${JSON.stringify(modelType)} has no IA3 default)`);
      }
      target = new Set(IA3_TARGET_MODULES_BY_MODEL_TYPE[modelType]);
    }
    if (feedforward === null) {
      if (!Object.hasOwn(IA3_FEEDFORWARD_MODULES_BY_MODEL_TYPE, modelType)) {
        throw new InputError(`Please specify \`feedforward_modules\` in \`peft_config\` (model_type ${JSON.stringify(modelType)} has no IA3 default)`);
      }
      feedforward = new Set(IA3_FEEDFORWARD_MODULES_BY_MODEL_TYPE[modelType]);
    }
    return this.with({ targetModules: target, feedforwardModules: feedforward });
  }

  /**
   * Appends the modules PEFT's task wrapper adds to `modules_to_save` when it wraps a model:
   * SEQ_CLS and TOKEN_CLS add ['classifier', 'score'], QUESTION_ANS adds ['qa_outputs']; other
   * tasks return this config. Like PEFT, it extends the list (duplicates kept), so call it once
   * per model creation or load, where PEFT's wrapper constructor runs.
   */
  withTaskModulesToSave(): IA3Config {
    const extra = this.taskType === null ? undefined : TASK_MODULES_TO_SAVE[this.taskType];
    if (extra === undefined) return this;
    return this.with({ modulesToSave: [...(this.modulesToSave ?? []), ...extra] });
  }

  /** The adapter_config.json object (sets as code-point-sorted lists; see the module header). */
  toJSON(): AdapterConfigJson {
    return {
      auto_mapping: this.autoMapping === null ? null : cloneJson(this.autoMapping) as { [key: string]: JsonValue },
      base_model_name_or_path: this.baseModelNameOrPath,
      exclude_modules: selectionToJson(this.excludeModules),
      fan_in_fan_out: this.fanInFanOut,
      feedforward_modules: selectionToJson(this.feedforwardModules),
      inference_mode: this.inferenceMode,
      init_ia3_weights: this.initIa3Weights,
      modules_to_save: this.modulesToSave === null ? null : [...this.modulesToSave],
      peft_type: 'IA3',
      peft_version: this.peftVersion,
      revision: this.revision,
      target_modules: selectionToJson(this.targetModules),
      task_type: this.taskType,
    };
  }

  /**
   * Parses an untrusted adapter_config.json (text, UTF-8 bytes or an already parsed object).
   * At most MAX_CONFIG_BYTES; `peft_type` must be "IA3"; a field of the wrong type is a FormatError
   * naming it; unknown fields are ignored and listed in `unknownFields`; PEFT's validation applies.
   */
  static fromJSON(input: string | Uint8Array | object, fileName = 'adapter_config.json'): IA3Config {
    const fail = (detail: string): never => {
      throw new FormatError(fileName, detail);
    };
    let parsed: unknown = input;
    if (typeof input === 'string' || input instanceof Uint8Array) {
      let text: string;
      if (typeof input === 'string') {
        // Cheap bound first (a UTF-16 unit is at least one UTF-8 byte), exact count after.
        if (input.length > MAX_CONFIG_BYTES || new TextEncoder().encode(input).length > MAX_CONFIG_BYTES) {
          fail(`larger than the ${MAX_CONFIG_BYTES}-byte limit for a config file`);
        }
        text = input;
      } else {
        if (input.length > MAX_CONFIG_BYTES) fail(`${input.length} bytes, larger than the ${MAX_CONFIG_BYTES}-byte limit for a config file`);
        try {
          text = new TextDecoder('utf-8', { fatal: true }).decode(input);
        } catch {
          return fail('not valid UTF-8');
        }
      }
      try {
        parsed = JSON.parse(text);
      } catch (e) {
        fail(`not valid JSON: ${(e as Error).message}`);
      }
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
      fail(`must hold a JSON object, found ${jsonTypeName(parsed)}`);
    }
    const obj = parsed as Record<string, unknown>;
    if (!Object.hasOwn(obj, 'peft_type')) fail('missing field "peft_type"');
    if (obj.peft_type !== 'IA3') fail(`field "peft_type" must be "IA3" for an IA3 adapter, found ${describeValue(obj.peft_type)}`);

    const options: InternalOptions = {};
    const known = new Set<string>(['peft_type']);
    for (const [json, option] of FIELDS) {
      known.add(json);
      if (Object.hasOwn(obj, json)) (options as Record<string, unknown>)[option] = obj[json];
    }
    options[UNKNOWN_FIELDS] = Object.keys(obj).filter((k) => !known.has(k)).sort(compareCodePoints);
    options[MAKE_ERROR] = (field, detail) => new FormatError(fileName, field === null ? detail : `field "${field}" ${detail}`);
    return new IA3Config(options);
  }

  private options(): IA3ConfigOptions {
    return {
      targetModules: this.targetModules,
      excludeModules: this.excludeModules,
      feedforwardModules: this.feedforwardModules,
      modulesToSave: this.modulesToSave,
      initIa3Weights: this.initIa3Weights,
      fanInFanOut: this.fanInFanOut,
      taskType: this.taskType,
      baseModelNameOrPath: this.baseModelNameOrPath,
      revision: this.revision,
      inferenceMode: this.inferenceMode,
      autoMapping: this.autoMapping,
      peftVersion: this.peftVersion,
    };
  }
}

/**
 * adapter_config.json text exactly as PEFT writes it: Python's
 * `json.dumps(config_dict, indent=2, sort_keys=True)` (no trailing newline).
 */
export function serializeConfig(config: IA3Config): string {
  return pythonJsonDumps(config.toJSON() as unknown as JsonValue);
}

// ---------------------------------------------------------------------------------------------
// Field checks

function checkField(v: unknown, kind: Kind, fail: (detail: string, plain?: boolean) => Error): unknown {
  switch (kind) {
    case 'bool':
      if (typeof v !== 'boolean') throw fail(`must be true or false, found ${describeValue(v)}`);
      return v;
    case 'string':
      if (v !== null && typeof v !== 'string') throw fail(`must be a string or null, found ${describeValue(v)}`);
      return v;
    case 'task':
      if (v === null) return v;
      if (typeof v !== 'string' || !(TASK_TYPES as readonly string[]).includes(v)) {
        // PEFT's message (PeftConfigMixin.__post_init__).
        throw fail(`Invalid task type: '${String(v)}'. Must be one of the following task types: ${TASK_TYPES.join(', ')}.`, true);
      }
      return v;
    case 'list': {
      if (v === null) return v;
      const list = stringList(v);
      if (list === undefined) throw fail(`must be a list of strings or null, found ${describeValue(v)}`);
      return Object.freeze(list);
    }
    case 'modules': {
      if (v === null || typeof v === 'string') return v;
      const list = stringList(v);
      if (list === undefined) throw fail(`must be a list of strings, a regex string or null, found ${describeValue(v)}`);
      return new Set(list);
    }
    case 'object':
      if (v === null) return v;
      if (typeof v !== 'object' || Array.isArray(v)) throw fail(`must be an object or null, found ${describeValue(v)}`);
      try {
        return Object.freeze(cloneJson(v as JsonValue));
      } catch (e) {
        throw fail(`must hold only JSON values: ${(e as Error).message}`);
      }
  }
}

function stringList(v: unknown): string[] | undefined {
  const items = v instanceof Set ? [...(v as Set<unknown>)] : Array.isArray(v) ? (v as unknown[]) : undefined;
  if (items === undefined || !items.every((x) => typeof x === 'string')) return undefined;
  return items as string[];
}

function selectionToJson(s: ModuleSelection): string[] | string | null {
  if (s === null || typeof s === 'string') return s;
  return [...s].sort(compareCodePoints);
}

// Deep copy of a JSON value into null-prototype objects; rejects non-JSON values and deep nesting.
function cloneJson(v: JsonValue, depth = 0): JsonValue {
  if (depth > 64) throw new Error('nested deeper than 64 levels');
  if (v === null || typeof v === 'boolean' || typeof v === 'string') return v;
  if (typeof v === 'number') return v;
  if (Array.isArray(v)) return v.map((x) => cloneJson(x, depth + 1));
  if (typeof v === 'object' && Object.getPrototypeOf(v) !== null && Object.getPrototypeOf(v) !== Object.prototype) {
    throw new Error(`found a ${(v as object).constructor?.name ?? 'non-plain'} object`);
  }
  if (typeof v !== 'object') throw new Error(`found a ${typeof v}`);
  const out = Object.create(null) as { [key: string]: JsonValue };
  for (const [k, x] of Object.entries(v)) out[k] = cloneJson(x, depth + 1);
  return out;
}

function jsonTypeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}

function describeValue(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 60 ? v.slice(0, 60) + '…' : v);
  if (v === undefined) return 'nothing';
  if (typeof v === 'number' || typeof v === 'boolean' || v === null) return String(v);
  return jsonTypeName(v);
}
