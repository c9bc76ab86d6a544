// IA3Config, module matching and parameter counts against PEFT 0.20's behaviour.
//
// Expected strings marked "Python:" were produced by CPython 3 (`json.dumps(..., indent=2,
// sort_keys=True)`, `repr(float)`, PEFT's f-string for print_trainable_parameters); PEFT messages
// are copied from peft/config.py, peft/tuners/ia3/{config,model}.py and peft/tuners/tuners_utils.py.
// Module lists come from the committed fixtures (tests/fixtures/onnx_summary.json: every Linear /
// Conv1D of the exported models) and are checked against ia3_reference.json, which the fixture
// generator computed with its own Python re-implementation of PEFT's placement.

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { FormatError, InputError } from '../../src/errors.js';
import { MAX_CONFIG_BYTES } from '../../src/io/adapter.js';
import { pythonFloatRepr, pythonJsonDumps, type JsonValue } from '../../src/io/python.js';
import { IA3Config, IA3_FEEDFORWARD_MODULES_BY_MODEL_TYPE, IA3_TARGET_MODULES_BY_MODEL_TYPE, PEFT_VERSION, serializeConfig } from '../../src/peft/config.js';
import { NoMatchingModulesError, expandAllLinear, isExcluded, isFeedforward, isModuleToSave, isTargeted, selectModules, translatePythonRegex } from '../../src/peft/match.js';
import { formatTrainableParameters, ia3ParamCount, pythonFixed } from '../../src/peft/params.js';

const fixture = (path: string): unknown => JSON.parse(readFileSync(new URL(`../fixtures/${path}`, import.meta.url), 'utf8'));

interface Summary { files: Record<string, { linear_modules: Record<string, { nodes: { op_type: string; initializers: Record<string, number[]> }[] }> }> }
interface Reference {
  peft_config: { target_modules: string[]; feedforward_modules: string[] };
  targeted_modules: { path: string; is_feedforward: boolean; in_features: number; out_features: number }[];
  print_trainable_parameters: { trainable_params: number; all_params: number; line: string };
}
const summary = fixture('onnx_summary.json') as Summary;
const linearModules = (model: string): string[] => Object.keys(summary.files[`${model}/onnx/model.onnx`]!.linear_modules);
const reference = (model: string): Reference => fixture(`${model}/ia3_reference.json`) as Reference;

// Every ancestor of the linear paths plus the root: a stand-in for named_modules().
function namedModules(linear: readonly string[]): { path: string; supported: boolean }[] {
  const all = new Set<string>(['']);
  for (const p of linear) {
    const parts = p.split('.');
    for (let i = 1; i <= parts.length; i++) all.add(parts.slice(0, i).join('.'));
  }
  const lin = new Set(linear);
  return [...all].map((path) => ({ path, supported: lin.has(path) }));
}

const BERT_LINEAR = [
  'bert.encoder.layer.0.attention.self.query',
  'bert.encoder.layer.0.attention.self.key',
  'bert.encoder.layer.0.attention.self.value',
  'bert.encoder.layer.0.attention.output.dense',
  'bert.encoder.layer.0.intermediate.dense',
  'bert.encoder.layer.0.output.dense',
  'bert.pooler.dense',
  'classifier',
];

describe('IA3Config fields and validation', () => {
  it('has PEFT defaults', () => {
    const c = new IA3Config();
    expect(c.peftType).toBe('IA3');
    expect(c.targetModules).toBeNull();
    expect(c.excludeModules).toBeNull();
    expect(c.feedforwardModules).toBeNull();
    expect(c.modulesToSave).toBeNull();
    expect(c.initIa3Weights).toBe(true);
    expect(c.fanInFanOut).toBe(false);
    expect(c.inferenceMode).toBe(false);
    expect(c.taskType).toBeNull();
    expect(c.peftVersion).toBe(PEFT_VERSION);
    expect(Object.isFrozen(c)).toBe(true);
  });

  it('turns lists into sets (duplicates collapse) and keeps a string as a regex', () => {
    const c = new IA3Config({ targetModules: ['v', 'k', 'v'], feedforwardModules: ['k'], excludeModules: '.*pooler.*' });
    expect(c.targetModules).toEqual(new Set(['k', 'v']));
    expect(c.excludeModules).toBe('.*pooler.*');
    expect(c.toJSON().target_modules).toEqual(['k', 'v']); // sorted, not insertion order
  });

  it("raises PEFT's subset error only when both are lists", () => {
    const bad = () => new IA3Config({ targetModules: ['key', 'value'], feedforwardModules: ['output.dense'] });
    expect(bad).toThrow(InputError);
    expect(bad).toThrow(/^`feedforward_modules` should be a subset of `target_modules`$/);
    expect(() => new IA3Config({ targetModules: '.*key', feedforwardModules: ['output.dense'] })).not.toThrow();
    expect(() => new IA3Config({ targetModules: ['key'], feedforwardModules: '.*dense' })).not.toThrow();
    expect(() => new IA3Config({ targetModules: ['key', 'output.dense'], feedforwardModules: ['output.dense'] })).not.toThrow();
    // An empty feed-forward set is a subset of anything.
    expect(() => new IA3Config({ targetModules: ['k'], feedforwardModules: [] })).not.toThrow();
  });

  it("rejects an unknown task type with PEFT's message", () => {
    expect(() => new IA3Config({ taskType: 'SEQ2SEQ' as never })).toThrow(
      "Invalid task type: 'SEQ2SEQ'. Must be one of the following task types: SEQ_CLS, SEQ_2_SEQ_LM, CAUSAL_LM, TOKEN_CLS, QUESTION_ANS, FEATURE_EXTRACTION.",
    );
  });

  it('type-checks options, naming the option', () => {
    expect(() => new IA3Config({ fanInFanOut: 'yes' as never })).toThrow(/IA3Config: fanInFanOut must be true or false, found "yes"/);
    expect(() => new IA3Config({ targetModules: ['a', 3] as never })).toThrow(/IA3Config: targetModules must be a list of strings/);
    expect(() => new IA3Config({ modulesToSave: 'classifier' as never })).toThrow(/IA3Config: modulesToSave must be a list of strings or null/);
    expect(() => new IA3Config({ autoMapping: { a: new Date() } as never })).toThrow(/IA3Config: autoMapping must hold only JSON values/);
  });

  it('with() changes fields like attribute assignment (no subset re-check)', () => {
    const c = new IA3Config({ targetModules: ['key'] });
    const d = c.with({ feedforwardModules: ['output.dense'], inferenceMode: true });
    expect(d.feedforwardModules).toEqual(new Set(['output.dense']));
    expect(d.inferenceMode).toBe(true);
    expect(c.inferenceMode).toBe(false);
  });
});

describe('defaults by model type', () => {
  it("copies PEFT's tables (constants.py)", () => {
    expect(IA3_TARGET_MODULES_BY_MODEL_TYPE.bert).toEqual(['key', 'value', 'output.dense']);
    expect(IA3_FEEDFORWARD_MODULES_BY_MODEL_TYPE.bert).toEqual(['output.dense']);
    expect(IA3_TARGET_MODULES_BY_MODEL_TYPE.gpt2).toEqual(['c_attn', 'mlp.c_proj']);
    expect(IA3_TARGET_MODULES_BY_MODEL_TYPE.llama).toEqual(['k_proj', 'v_proj', 'down_proj']);
    expect(IA3_TARGET_MODULES_BY_MODEL_TYPE.qwen2).toEqual(['q_proj', 'v_proj', 'down_proj']);
    expect(IA3_TARGET_MODULES_BY_MODEL_TYPE.mt5).toEqual(['k', 'v', 'wi_1']);
    expect(IA3_FEEDFORWARD_MODULES_BY_MODEL_TYPE.mt5).toEqual([]);
    expect(IA3_TARGET_MODULES_BY_MODEL_TYPE.deberta).toEqual(['in_proj', 'output.dense']);
    expect(Object.keys(IA3_TARGET_MODULES_BY_MODEL_TYPE).sort()).toEqual(Object.keys(IA3_FEEDFORWARD_MODULES_BY_MODEL_TYPE).sort());
    expect(Object.keys(IA3_TARGET_MODULES_BY_MODEL_TYPE)).toHaveLength(27);
    for (const [type, ff] of Object.entries(IA3_FEEDFORWARD_MODULES_BY_MODEL_TYPE)) {
      for (const m of ff) expect(IA3_TARGET_MODULES_BY_MODEL_TYPE[type]).toContain(m);
    }
  });

  it('fills null targets and feed-forward modules', () => {
    const c = new IA3Config({ taskType: 'CAUSAL_LM' }).resolveForModelType('gpt2');
    expect(c.targetModules).toEqual(new Set(['c_attn', 'mlp.c_proj']));
    expect(c.feedforwardModules).toEqual(new Set(['mlp.c_proj']));
    expect(c.taskType).toBe('CAUSAL_LM');
  });

  it('keeps given lists and, like PEFT, does not re-check the subset rule', () => {
    const c = new IA3Config({ targetModules: ['key'] }).resolveForModelType('bert');
    expect(c.targetModules).toEqual(new Set(['key']));
    expect(c.feedforwardModules).toEqual(new Set(['output.dense']));
  });

  it("errors with PEFT's messages for an unknown model type", () => {
    expect(() => new IA3Config().resolveForModelType('distilbert')).toThrow(InputError);
    expect(() => new IA3Config().resolveForModelType('distilbert')).toThrow(/^Please specify `target_modules` in `peft_config`/);
    expect(() => new IA3Config({ targetModules: ['q_lin'] }).resolveForModelType('distilbert')).toThrow(
      /^Please specify `feedforward_modules` in `peft_config`/,
    );
    expect(() => new IA3Config().resolveForModelType('constructor')).toThrow(/target_modules/);
    const given = new IA3Config({ targetModules: ['q_lin'], feedforwardModules: [] }).resolveForModelType('distilbert');
    expect(given.targetModules).toEqual(new Set(['q_lin']));
  });

  it('adds the task heads to modules_to_save as PEFT wrappers do', () => {
    expect(new IA3Config({ taskType: 'SEQ_CLS' }).withTaskModulesToSave().modulesToSave).toEqual(['classifier', 'score']);
    expect(new IA3Config({ taskType: 'TOKEN_CLS' }).withTaskModulesToSave().modulesToSave).toEqual(['classifier', 'score']);
    expect(new IA3Config({ taskType: 'QUESTION_ANS' }).withTaskModulesToSave().modulesToSave).toEqual(['qa_outputs']);
    expect(new IA3Config({ taskType: 'CAUSAL_LM' }).withTaskModulesToSave().modulesToSave).toBeNull();
    // PEFT extends the list: duplicates are kept and order is preserved.
    expect(new IA3Config({ taskType: 'SEQ_CLS', modulesToSave: ['classifier'] }).withTaskModulesToSave().modulesToSave).toEqual([
      'classifier', 'classifier', 'score',
    ]);
  });
});

describe('adapter_config.json', () => {
  it('toJSON has exactly the fields PEFT writes for IA3', () => {
    expect(new IA3Config().toJSON()).toEqual({
      auto_mapping: null,
      base_model_name_or_path: null,
      exclude_modules: null,
      fan_in_fan_out: false,
      feedforward_modules: null,
      inference_mode: false,
      init_ia3_weights: true,
      modules_to_save: null,
      peft_type: 'IA3',
      peft_version: PEFT_VERSION,
      revision: null,
      target_modules: null,
      task_type: null,
    });
  });

  it('serialises like json.dumps(indent=2, sort_keys=True), ensure_ascii included', () => {
    const config = new IA3Config({
      taskType: 'SEQ_CLS',
      targetModules: ['value', 'key', 'output.dense'],
      feedforwardModules: ['output.dense'],
      inferenceMode: true,
      autoMapping: {
        base_model_class: 'BertModel',
        parent_library: 'transformers.models.bert.modeling_bert',
        z: [1, 2.5, 1e16, 1.5e-5, 0.0001, 123456789.125, -0, [], {}],
        a: { 'été \u{1F600}\x7f\x01\t"\\/': true },
      },
    });
    // Python: json.dumps of the same dict (auto_mapping's 1e16 etc. as Python floats).
    const python = `{
  "auto_mapping": {
    "a": {
      "\\u00e9t\\u00e9 \\ud83d\\ude00\\u007f\\u0001\\t\\"\\\\/": true
    },
    "base_model_class": "BertModel",
    "parent_library": "transformers.models.bert.modeling_bert",
    "z": [
      1,
      2.5,
      1e+16,
      1.5e-05,
      0.0001,
      123456789.125,
      -0.0,
      [],
      {}
    ]
  },
  "base_model_name_or_path": null,
  "exclude_modules": null,
  "fan_in_fan_out": false,
  "feedforward_modules": [
    "output.dense"
  ],
  "inference_mode": true,
  "init_ia3_weights": true,
  "modules_to_save": null,
  "peft_type": "IA3",
  "peft_version": "0.20.0",
  "revision": null,
  "target_modules": [
    "key",
    "output.dense",
    "value"
  ],
  "task_type": "SEQ_CLS"
}`;
    expect(serializeConfig(config)).toBe(python);
  });

  it("formats floats as Python's repr", () => {
    // Python: repr() of each value.
    const cases: [number, string][] = [
      [1e16, '1e+16'], [1e15, '1000000000000000.0'], [123456789012345680000, '1.2345678901234568e+20'],
      [1.5e-5, '1.5e-05'], [0.0001, '0.0001'], [0.00012345, '0.00012345'], [5e-324, '5e-324'],
      [1.7976931348623157e308, '1.7976931348623157e+308'], [0.1, '0.1'], [100, '100.0'], [2.5, '2.5'],
      [-0, '-0.0'], [1e22, '1e+22'], [9007199254740992, '9007199254740992.0'], [1234567890123456.8, '1234567890123456.8'],
    ];
    for (const [x, repr] of cases) expect(pythonFloatRepr(x)).toBe(repr);
    expect(pythonJsonDumps([NaN, Infinity, -Infinity, 3])).toBe('[\n  NaN,\n  Infinity,\n  -Infinity,\n  3\n]');
  });

  it('sorts keys and set entries by code point, as Python', () => {
    // U+FF21 < U+1F600 in code points, although its UTF-16 unit is larger than the surrogate's.
    expect(pythonJsonDumps({ '\u{1F600}': 1, '\uFF21': 2, b: 3, B: 4 } as JsonValue)).toBe(
      '{\n  "B": 4,\n  "b": 3,\n  "\\uff21": 2,\n  "\\ud83d\\ude00": 1\n}',
    );
    expect(new IA3Config({ targetModules: ['\u{1F600}', '\uFF21'] }).toJSON().target_modules).toEqual(['\uFF21', '\u{1F600}']);
  });

  // What PEFT 0.20 saves for get_peft_model(bert_for_sequence_classification, IA3Config(task_type="SEQ_CLS"))
  // with target/feed-forward modules resolved and modules_to_save added by the SEQ_CLS wrapper.
  const PEFT_SAVED = `{
  "auto_mapping": null,
  "base_model_name_or_path": "bert-base-uncased",
  "exclude_modules": null,
  "fan_in_fan_out": false,
  "feedforward_modules": [
    "output.dense"
  ],
  "inference_mode": true,
  "init_ia3_weights": true,
  "modules_to_save": [
    "classifier",
    "score"
  ],
  "peft_type": "IA3",
  "peft_version": "0.20.0",
  "revision": null,
  "target_modules": [
    "key",
    "output.dense",
    "value"
  ],
  "task_type": "SEQ_CLS"
}`;

  it('reproduces a PEFT-saved file from a config built the PEFT way', () => {
    const built = new IA3Config({ taskType: 'SEQ_CLS', baseModelNameOrPath: 'bert-base-uncased' })
      .withTaskModulesToSave()
      .resolveForModelType('bert')
      .with({ inferenceMode: true });
    expect(serializeConfig(built)).toBe(PEFT_SAVED);
  });

  it('parses a PEFT file and writes it back byte for byte', () => {
    const c = IA3Config.fromJSON(PEFT_SAVED);
    expect(c.targetModules).toEqual(new Set(['key', 'value', 'output.dense']));
    expect(c.modulesToSave).toEqual(['classifier', 'score']);
    expect(c.inferenceMode).toBe(true);
    expect(c.baseModelNameOrPath).toBe('bert-base-uncased');
    expect(c.unknownFields).toEqual([]);
    expect(serializeConfig(c)).toBe(PEFT_SAVED);
    expect(serializeConfig(IA3Config.fromJSON(new TextEncoder().encode(PEFT_SAVED)))).toBe(PEFT_SAVED);
    expect(serializeConfig(IA3Config.fromJSON(JSON.parse(PEFT_SAVED) as object))).toBe(PEFT_SAVED);
  });

  it('keeps a file version and fills a missing one', () => {
    expect(IA3Config.fromJSON({ peft_type: 'IA3', peft_version: '0.18.1@abc' }).peftVersion).toBe('0.18.1@abc');
    expect(IA3Config.fromJSON({ peft_type: 'IA3' }).peftVersion).toBe(PEFT_VERSION);
    expect(IA3Config.fromJSON({ peft_type: 'IA3', peft_version: null }).peftVersion).toBe(PEFT_VERSION);
  });

  it('lists unknown fields and ignores them', () => {
    const c = IA3Config.fromJSON({ peft_type: 'IA3', zeta: 1, target_modules: ['q'], alpha: {}, runtime_config: {}, __proto__: 5 } as object);
    expect(c.unknownFields).toEqual(['alpha', 'runtime_config', 'zeta']);
    const d = IA3Config.fromJSON('{"peft_type": "IA3", "__proto__": {"polluted": true}, "new_field": 1}');
    expect(d.unknownFields).toEqual(['__proto__', 'new_field']);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(serializeConfig(d)).not.toContain('new_field');
  });

  const formatError = (input: string | Uint8Array | object, message: RegExp) => {
    let caught: unknown;
    try {
      IA3Config.fromJSON(input);
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(FormatError);
    expect((caught as Error).message).toMatch(message);
  };

  it('rejects malformed files with FormatErrors naming the field', () => {
    formatError('{"peft_type": "IA3",', /^adapter_config\.json: not valid JSON/);
    formatError('[1, 2]', /must hold a JSON object, found an array/);
    formatError('"IA3"', /must hold a JSON object, found a string/);
    formatError('null', /must hold a JSON object, found null/);
    formatError(new Uint8Array([0x7b, 0xff, 0x7d]), /not valid UTF-8/);
    formatError('{}', /missing field "peft_type"/);
    formatError('{"peft_type": "LORA"}', /field "peft_type" must be "IA3" for an IA3 adapter, found "LORA"/);
    formatError('{"peft_type": "IA3", "target_modules": 5}', /field "target_modules" must be a list of strings, a regex string or null, found 5/);
    formatError('{"peft_type": "IA3", "target_modules": ["a", null]}', /field "target_modules" must be a list of strings/);
    formatError('{"peft_type": "IA3", "feedforward_modules": {"a": 1}}', /field "feedforward_modules" .* found an object/);
    formatError('{"peft_type": "IA3", "exclude_modules": true}', /field "exclude_modules"/);
    formatError('{"peft_type": "IA3", "modules_to_save": "classifier"}', /field "modules_to_save" must be a list of strings or null, found "classifier"/);
    formatError('{"peft_type": "IA3", "fan_in_fan_out": "false"}', /field "fan_in_fan_out" must be true or false, found "false"/);
    formatError('{"peft_type": "IA3", "inference_mode": 1}', /field "inference_mode" must be true or false, found 1/);
    formatError('{"peft_type": "IA3", "init_ia3_weights": null}', /field "init_ia3_weights" must be true or false, found null/);
    formatError('{"peft_type": "IA3", "revision": 3}', /field "revision" must be a string or null, found 3/);
    formatError('{"peft_type": "IA3", "base_model_name_or_path": []}', /field "base_model_name_or_path" must be a string or null, found an array/);
    formatError('{"peft_type": "IA3", "auto_mapping": "x"}', /field "auto_mapping" must be an object or null/);
    formatError('{"peft_type": "IA3", "task_type": "LM"}', /^adapter_config\.json: Invalid task type: 'LM'\. Must be one of/);
    // PEFT's own __post_init__ refuses such a file too.
    formatError('{"peft_type": "IA3", "target_modules": ["key"], "feedforward_modules": ["output.dense"]}',
      /^adapter_config\.json: `feedforward_modules` should be a subset of `target_modules`$/);
    formatError(`{"peft_type": "IA3", "revision": "${'x'.repeat(MAX_CONFIG_BYTES)}"}`, /larger than the 1000000-byte limit/);
    formatError(new Uint8Array(MAX_CONFIG_BYTES + 1), /larger than the 1000000-byte limit/);
    // The bound counts UTF-8 bytes: 400k three-byte characters exceed it in 400k UTF-16 units.
    formatError(`{"peft_type": "IA3", "revision": "${'\u20ac'.repeat(400_000)}"}`, /larger than the 1000000-byte limit/);
  });
});

describe('module matching', () => {
  const bert = new IA3Config().resolveForModelType('bert');

  it('list targets: exact path or ".name" suffix, never a bare suffix', () => {
    expect(isTargeted(bert, 'bert.encoder.layer.0.attention.self.key')).toBe(true);
    expect(isTargeted(bert, 'key')).toBe(true);
    expect(isTargeted(bert, 'bert.encoder.layer.0.attention.self.monkey')).toBe(false);
    expect(isTargeted(bert, 'bert.encoder.layer.0.output.dense')).toBe(true);
    expect(isTargeted(bert, 'bert.encoder.layer.0.intermediate.dense')).toBe(false);
    expect(isTargeted(bert, 'bert.encoder.layer.0.attention.self.key.sub')).toBe(false);
  });

  it('feed-forward lists match a plain suffix, without a dot boundary', () => {
    expect(isFeedforward(bert, 'bert.encoder.layer.0.attention.output.dense')).toBe(true);
    expect(isFeedforward(bert, 'bert.encoder.layer.0.output.dense')).toBe(true);
    expect(isFeedforward(bert, 'bert.encoder.layer.0.attention.self.key')).toBe(false);
    const c = new IA3Config({ targetModules: ['c_proj'], feedforwardModules: ['c_proj'] });
    expect(isFeedforward(c, 'h.0.mlp.xc_proj')).toBe(true); // PEFT: key.endswith("c_proj")
    expect(isTargeted(c, 'h.0.mlp.xc_proj')).toBe(false); // but target lists need the dot
  });

  it('string targets are Python regexes matched in full', () => {
    const c = new IA3Config({ targetModules: '.*layer\\.0\\..*(key|value)', feedforwardModules: '.*output\\.dense' });
    expect(isTargeted(c, 'bert.encoder.layer.0.attention.self.key')).toBe(true);
    expect(isTargeted(c, 'bert.encoder.layer.1.attention.self.key')).toBe(false);
    expect(isTargeted(c, 'bert.encoder.layer.0.attention.self.key.extra')).toBe(false); // fullmatch, not search
    expect(isFeedforward(c, 'bert.encoder.layer.0.output.dense')).toBe(true);
    expect(isFeedforward(c, 'bert.encoder.layer.0.output.dense2')).toBe(false);
    // Alternation at top level stays inside the anchors.
    const alt = new IA3Config({ targetModules: 'a|b.c', feedforwardModules: [] });
    expect(isTargeted(alt, 'a')).toBe(true);
    expect(isTargeted(alt, 'xa')).toBe(false);
    expect(isTargeted(alt, 'a.b.c')).toBe(false);
  });

  it('translates Python-only regex syntax', () => {
    const c = new IA3Config({ targetModules: '(?i)(?P<blk>layer)\\.(?P=blk)?\\d+\\.[]k]ey\\Z(?#comment)', feedforwardModules: [] });
    expect(isTargeted(c, 'LAYER.0.key')).toBe(true);
    expect(isTargeted(c, 'layer.layer12.]ey')).toBe(true);
    expect(isTargeted(c, 'layer.0.xey')).toBe(false);
    expect(translatePythonRegex('\\A[^]x]\\Z')).toEqual({ source: '(?<![\\s\\S])[^\\]x](?![\\s\\S])', flags: '' });
    expect(() => translatePythonRegex('(?x) a b')).toThrow(/verbose mode/);
    expect(() => isTargeted(new IA3Config({ targetModules: '(unclosed', feedforwardModules: [] }), 'x')).toThrow(InputError);
    expect(() => isTargeted(new IA3Config({ targetModules: '[abc', feedforwardModules: [] }), 'x')).toThrow(/unterminated character set/);
  });

  it('exclude_modules: list like targets, string by full match', () => {
    const list = bert.with({ excludeModules: ['layer.1.attention.self.key'] });
    expect(isExcluded(list, 'bert.encoder.layer.1.attention.self.key')).toBe(true);
    expect(isTargeted(list, 'bert.encoder.layer.1.attention.self.key')).toBe(false);
    expect(isTargeted(list, 'bert.encoder.layer.0.attention.self.key')).toBe(true);
    expect(isExcluded(list, 'bert.encoder.layer.11.attention.self.key')).toBe(false);
    const regex = bert.with({ excludeModules: '.*attention.*' });
    expect(isTargeted(regex, 'bert.encoder.layer.0.attention.output.dense')).toBe(false);
    expect(isTargeted(regex, 'bert.encoder.layer.0.output.dense')).toBe(true);
    expect(isExcluded(bert.with({ excludeModules: '' }), 'anything')).toBe(false); // falsy in PEFT
  });

  it('never adapts modules_to_save (or modules inside them)', () => {
    const c = new IA3Config({ targetModules: ['dense', 'classifier'], feedforwardModules: [], modulesToSave: ['classifier', 'pooler'] });
    expect(isModuleToSave(c, 'classifier')).toBe(true);
    expect(isModuleToSave(c, 'bert.pooler.dense')).toBe(true);
    expect(isModuleToSave(c, 'pre_classifier')).toBe(false);
    expect(isTargeted(c, 'classifier')).toBe(false);
    expect(isTargeted(c, 'bert.pooler.dense')).toBe(false);
    expect(isTargeted(c, 'bert.encoder.layer.0.output.dense')).toBe(true);
  });

  it('refuses to match an unresolved config', () => {
    expect(() => isTargeted(new IA3Config(), 'x')).toThrow(/resolveForModelType/);
    expect(() => isFeedforward(new IA3Config({ targetModules: ['x'] }), 'x')).toThrow(/feedforward_modules is not resolved/);
    expect(() => isTargeted(new IA3Config({ targetModules: 'all-linear' }), 'x')).toThrow(/expandAllLinear/);
  });
});

describe('selectModules on the fixture models', () => {
  for (const [model, type] of [['bert', 'bert'], ['gpt2', 'gpt2'], ['llama', 'llama']] as const) {
    it(`${model}: PEFT's default selection equals the fixture's targeted modules`, () => {
      const ref = reference(model);
      const config = new IA3Config().resolveForModelType(type);
      expect([...(config.targetModules as Set<string>)].sort()).toEqual([...ref.peft_config.target_modules].sort());
      const selected = selectModules(config, namedModules(linearModules(model)));
      expect(selected.map((s) => [s.path, s.feedforward]).sort()).toEqual(
        ref.targeted_modules.map((t) => [t.path, t.is_feedforward]).sort(),
      );
      const sizes = new Map(ref.targeted_modules.map((t) => [t.path, t]));
      const count = ia3ParamCount(selected.map((s) => ({ inFeatures: sizes.get(s.path)!.in_features, outFeatures: sizes.get(s.path)!.out_features, feedforward: s.feedforward })));
      expect(count).toBe(ref.print_trainable_parameters.trainable_params);
      expect(formatTrainableParameters(count, ref.print_trainable_parameters.all_params)).toBe(ref.print_trainable_parameters.line);
    });
  }

  it('distilbert: user-chosen modules (no PEFT default)', () => {
    const ref = reference('distilbert');
    const config = new IA3Config({ targetModules: ref.peft_config.target_modules, feedforwardModules: ref.peft_config.feedforward_modules });
    const selected = selectModules(config, namedModules(linearModules('distilbert')));
    expect(selected.map((s) => [s.path, s.feedforward]).sort()).toEqual(ref.targeted_modules.map((t) => [t.path, t.is_feedforward]).sort());
  });

  it("BERT's output.dense matches both attention.output.dense and the FFN output.dense", () => {
    const selected = selectModules(new IA3Config().resolveForModelType('bert'), namedModules(BERT_LINEAR));
    expect(selected).toEqual([
      { path: 'bert.encoder.layer.0.attention.self.key', feedforward: false },
      { path: 'bert.encoder.layer.0.attention.self.value', feedforward: false },
      { path: 'bert.encoder.layer.0.attention.output.dense', feedforward: true },
      { path: 'bert.encoder.layer.0.output.dense', feedforward: true },
    ]);
  });

  it("raises PEFT's errors when nothing is selected", () => {
    const modules = namedModules(BERT_LINEAR);
    const notFound = () => selectModules(new IA3Config({ targetModules: ['q_proj', 'k_proj'], feedforwardModules: [] }), modules);
    expect(notFound).toThrow(NoMatchingModulesError);
    expect(notFound).toThrow("Target modules {'k_proj', 'q_proj'} not found in the base model. Please check the target modules and try again.");
    expect(() => selectModules(new IA3Config({ targetModules: '.*q_proj', feedforwardModules: [] }), modules)).toThrow(
      'Target modules .*q_proj not found in the base model.',
    );
    expect(() => selectModules(new IA3Config({ targetModules: [], feedforwardModules: [] }), modules)).toThrow(
      'No `target_modules` passed but also no `target_parameters` found.',
    );
    const allExcluded = new IA3Config({ targetModules: '.*', feedforwardModules: [], excludeModules: '.*' });
    expect(() => selectModules(allExcluded, modules)).toThrow(/^All modules were excluded\. This is likely unintended\./);
    const mixed = new IA3Config({ targetModules: ['key'], feedforwardModules: [], excludeModules: ['key'] });
    expect(() => selectModules(mixed, modules)).toThrow(/^No modules were targeted for adaptation\./);
  });

  it('refuses a targeted module that is not linear, and duplicate paths', () => {
    const c = new IA3Config({ targetModules: ['attention'], feedforwardModules: [] });
    expect(() => selectModules(c, namedModules(BERT_LINEAR))).toThrow(/^Target module bert\.encoder\.layer\.0\.attention is not supported/);
    expect(() => selectModules(c, [{ path: 'a' }, { path: 'a' }])).toThrow(/listed twice/);
  });

  it('warns when exclude_modules excluded nothing', () => {
    const warnings: string[] = [];
    selectModules(new IA3Config({ excludeModules: ['nothing'] }).resolveForModelType('bert'), namedModules(BERT_LINEAR), {
      onWarning: (m) => warnings.push(m),
    });
    expect(warnings).toEqual([
      "You have passed exclude_modules={'nothing'} but no modules were excluded. Please check that exclude_modules was set correctly.",
    ]);
  });
});

describe("'all-linear'", () => {
  it('takes every linear layer except the output head', () => {
    const lin = linearModules('gpt2');
    expect(lin).toContain('lm_head');
    const c = expandAllLinear(new IA3Config({ targetModules: 'ALL-LINEAR', taskType: 'CAUSAL_LM' }).resolveForModelType('gpt2'), {
      linearModules: lin,
      outputLayer: 'lm_head',
    });
    expect(c.targetModules).toEqual(new Set(lin.filter((p) => p !== 'lm_head')));
    const selected = selectModules(c, namedModules(lin));
    expect(selected.map((s) => s.path).sort()).toEqual(lin.filter((p) => p !== 'lm_head').sort());
    // Feed-forward still comes from gpt2's default ('mlp.c_proj'), by plain suffix.
    expect(selected.filter((s) => s.feedforward).map((s) => s.path)).toEqual(['transformer.h.0.mlp.c_proj', 'transformer.h.1.mlp.c_proj']);
  });

  it('for SEQ_CLS without an output layer drops the first of score / classifier', () => {
    const base = new IA3Config({ targetModules: 'all-linear', taskType: 'SEQ_CLS', feedforwardModules: [] });
    const c = expandAllLinear(base, { linearModules: BERT_LINEAR, outputLayer: null });
    expect((c.targetModules as Set<string>).has('classifier')).toBe(false);
    expect((c.targetModules as Set<string>).has('bert.pooler.dense')).toBe(true);
    // RoBERTa's classifier is a module holding dense + out_proj: only the exact path is dropped.
    const roberta = ['roberta.encoder.layer.0.attention.self.key', 'classifier.dense', 'classifier.out_proj'];
    const r = expandAllLinear(base, { linearModules: roberta, moduleNames: ['', 'roberta', 'classifier', ...roberta] });
    expect(r.targetModules).toEqual(new Set(roberta));
    // Other tasks keep the head.
    const lm = expandAllLinear(base.with({ taskType: 'FEATURE_EXTRACTION' }), { linearModules: BERT_LINEAR });
    expect((lm.targetModules as Set<string>).has('classifier')).toBe(true);
    // Non-'all-linear' configs pass through.
    const plain = new IA3Config({ targetModules: ['key'] });
    expect(expandAllLinear(plain, { linearModules: BERT_LINEAR })).toBe(plain);
  });

  it('with SEQ_CLS modules_to_save the head is not adapted even if listed', () => {
    const c = expandAllLinear(new IA3Config({ targetModules: 'all-linear', taskType: 'SEQ_CLS', feedforwardModules: [] }).withTaskModulesToSave(), {
      linearModules: BERT_LINEAR,
      outputLayer: 'bert.pooler.dense',
    });
    expect((c.targetModules as Set<string>).has('classifier')).toBe(true);
    expect(selectModules(c, namedModules(BERT_LINEAR)).map((s) => s.path)).not.toContain('classifier');
  });
});

describe('print_trainable_parameters', () => {
  it("matches PEFT's f-string (Python outputs)", () => {
    // Python: f"trainable params: {t:,d} || all params: {a:,d} || trainable%: {100 * t / a:.4f}"
    const cases: [number | bigint, number | bigint, string][] = [
      [282624, 1229863936, 'trainable params: 282,624 || all params: 1,229,863,936 || trainable%: 0.0230'],
      [1, 3200, 'trainable params: 1 || all params: 3,200 || trainable%: 0.0312'], // exact tie → even
      [1, 32, 'trainable params: 1 || all params: 32 || trainable%: 3.1250'],
      [3, 8, 'trainable params: 3 || all params: 8 || trainable%: 37.5000'],
      [64512, 109482240, 'trainable params: 64,512 || all params: 109,482,240 || trainable%: 0.0589'],
      [2, 3, 'trainable params: 2 || all params: 3 || trainable%: 66.6667'],
      [1, 1, 'trainable params: 1 || all params: 1 || trainable%: 100.0000'],
      [0, 5, 'trainable params: 0 || all params: 5 || trainable%: 0.0000'],
      [7n, 700000000000000000003n, 'trainable params: 7 || all params: 700,000,000,000,000,000,003 || trainable%: 0.0000'],
      [10000000000000000000n, 30000000000000000001n, 'trainable params: 10,000,000,000,000,000,000 || all params: 30,000,000,000,000,000,001 || trainable%: 33.3333'],
      [71999863748, 623347347958, 'trainable params: 71,999,863,748 || all params: 623,347,347,958 || trainable%: 11.5505'],
      [105207092603, 129944532029, 'trainable params: 105,207,092,603 || all params: 129,944,532,029 || trainable%: 80.9631'],
      [208957000731, 517326624932, 'trainable params: 208,957,000,731 || all params: 517,326,624,932 || trainable%: 40.3917'],
      [133547110028, 231020807703, 'trainable params: 133,547,110,028 || all params: 231,020,807,703 || trainable%: 57.8074'],
      [428791346098, 979374294953, 'trainable params: 428,791,346,098 || all params: 979,374,294,953 || trainable%: 43.7822'],
      [649522587953, 883567286527, 'trainable params: 649,522,587,953 || all params: 883,567,286,527 || trainable%: 73.5114'],
      [46821274425, 115729056419, 'trainable params: 46,821,274,425 || all params: 115,729,056,419 || trainable%: 40.4577'],
    ];
    for (const [t, a, line] of cases) expect(formatTrainableParameters(t, a)).toBe(line);
  });

  it('rounds like Python format(x, ".4f"): exact binary value, ties to even', () => {
    // Python: f"{x:.4f}" and f"{x:.0f}".
    const cases: [number, string, string][] = [
      [0.03125, '0.0312', '0'], [0.00005, '0.0001', '0'], [0.00015, '0.0001', '0'], [0.00025, '0.0003', '0'],
      [2.5, '2.5000', '2'], [1.23445, '1.2345', '1'], [1e-10, '0.0000', '0'], [123.45675, '123.4567', '123'],
    ];
    for (const [x, four, zero] of cases) {
      expect(pythonFixed(x, 4)).toBe(four);
      expect(pythonFixed(x, 0)).toBe(zero);
    }
    expect(pythonFixed(-0.00001, 4)).toBe('-0.0000');
  });

  it('rejects impossible counts', () => {
    expect(() => formatTrainableParameters(1, 0)).toThrow(InputError);
    expect(() => formatTrainableParameters(-1, 10)).toThrow(/non-negative/);
    expect(() => formatTrainableParameters(1.5, 10)).toThrow(/non-negative integer/);
  });

  it('counts IA3 parameters per placement (BERT-base: 64,512)', () => {
    const layer = [
      { inFeatures: 768, outFeatures: 768, feedforward: false }, // key
      { inFeatures: 768, outFeatures: 768, feedforward: false }, // value
      { inFeatures: 768, outFeatures: 768, feedforward: true }, // attention.output.dense
      { inFeatures: 3072, outFeatures: 768, feedforward: true }, // output.dense
    ];
    expect(ia3ParamCount(Array.from({ length: 12 }, () => layer).flat())).toBe(64512);
    expect(() => ia3ParamCount([{ inFeatures: -1, outFeatures: 2, feedforward: true }])).toThrow(/inFeatures/);
  });
});
