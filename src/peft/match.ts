// Which modules get an IA3 vector, and which of those scale their input: PEFT's matching rules.
//
// From PEFT 0.20 (peft/tuners/tuners_utils.py `check_target_module_exists`, `inject_adapter`,
// `_maybe_include_all_linear_layers`; peft/tuners/ia3/model.py `_check_target_module_feedforward`):
//   - exclusion first: `exclude_modules` as a list excludes a path equal to an entry or ending in
//     "." + entry, as a string excludes on a regex full match; modules named in `modules_to_save`
//     (matched as `(^|.*\.)NAME($|\..*)`) are never adapted either;
//   - `target_modules` list: exact path or "." + entry suffix; string: regex full match;
//   - `feedforward_modules` list: plain `path.endsWith(entry)` with NO dot boundary (so "dense"
//     also matches "xdense"); string: regex full match;
//   - 'all-linear' becomes the set of all linear paths minus the output head (or, for SEQ_CLS
//     models without one, the first of `score`/`classifier` that exists as a top-level module).
// Patterns are Python `re` syntax; they are translated to JavaScript RegExp (named groups, \A, \Z,
// leading inline flags) and anchored to mimic `re.fullmatch`. Module paths are PyTorch's
// `named_modules()` names, e.g. "bert.encoder.layer.0.attention.self.key".

import { InputError } from '../errors.js';
import { compareCodePoints } from '../io/python.js';
import type { IA3Config } from './config.js';

/** A module of the base model, by PyTorch path. `supported: false` marks a non-linear module. */
export interface ModuleInfo {
  readonly path: string;
  readonly supported?: boolean;
}

/** A module that gets an IA3 vector. */
export interface SelectedModule {
  readonly path: string;
  /** true: the vector (1, in) scales the input; false: the vector (out, 1) scales the output. */
  readonly feedforward: boolean;
}

/** Nothing was selected (PEFT's NoMatchingPeftModuleError); the message is PEFT's. */
export class NoMatchingModulesError extends InputError {}

/** Head names PEFT drops from 'all-linear' for SEQ_CLS (constants.py SEQ_CLS_HEAD_NAMES), in order. */
export const SEQ_CLS_HEAD_NAMES = ['score', 'classifier'] as const;

/** True when `path` is excluded by `exclude_modules` (list: exact or ".entry" suffix; string: full match). */
export function isExcluded(config: IA3Config, path: string): boolean {
  const e = config.excludeModules;
  if (e === null) return false;
  if (typeof e === 'string') return e !== '' && fullMatch(e, 'exclude_modules').test(path);
  return e.has(path) || [...e].some((x) => path.endsWith('.' + x));
}

/** True when `path` is, or is inside, a module of `modules_to_save` (PEFT never adapts those). */
export function isModuleToSave(config: IA3Config, path: string): boolean {
  return (config.modulesToSave ?? []).some((m) => modulesToSaveGuard(m).test(path));
}

/**
 * PEFT's `check_target_module_exists` for a resolved config: false for excluded modules and
 * modules to save, else whether `target_modules` matches the path.
 */
export function isTargeted(config: IA3Config, path: string): boolean {
  const t = resolvedTargets(config);
  if (isExcluded(config, path) || isModuleToSave(config, path)) return false;
  return matchesTargets(t, path);
}

/** Whether a targeted module scales its input (PEFT's `_check_target_module_feedforward`). */
export function isFeedforward(config: IA3Config, path: string): boolean {
  const f = config.feedforwardModules;
  if (f === null) {
    throw new InputError('feedforward_modules is not resolved: call config.resolveForModelType(model_type) first, or specify `feedforward_modules`');
  }
  if (typeof f === 'string') return fullMatch(f, 'feedforward_modules').test(path);
  return [...f].some((x) => path.endsWith(x));
}

/**
 * Replaces the 'all-linear' shorthand by the set of linear module paths, minus the output layer
 * (`get_output_embeddings()`, e.g. "lm_head") or, when there is none and the task is SEQ_CLS, the
 * first of SEQ_CLS_HEAD_NAMES present among `moduleNames` (default: the linear modules) — only
 * that exact path, so a non-linear head such as RoBERTa's `classifier` excludes nothing, as in
 * PEFT. Other configs are returned unchanged.
 */
export function expandAllLinear(
  config: IA3Config,
  model: { readonly linearModules: readonly string[]; readonly outputLayer?: string | null; readonly moduleNames?: readonly string[] },
): IA3Config {
  if (!config.isAllLinear) return config;
  const drop = new Set<string>();
  if (model.outputLayer != null) drop.add(model.outputLayer);
  else if (config.taskType === 'SEQ_CLS') {
    const present = new Set(model.moduleNames ?? model.linearModules);
    const head = SEQ_CLS_HEAD_NAMES.find((n) => present.has(n));
    if (head !== undefined) drop.add(head);
  }
  return config.with({ targetModules: model.linearModules.filter((p) => !drop.has(p)) });
}

/**
 * The modules that get an IA3 vector, in input order, with their placement — PEFT's
 * `inject_adapter` loop. `modules` lists every module of the model (the root "" is skipped), so
 * that the errors match PEFT's: NoMatchingModulesError when nothing is selected, InputError when a
 * selected module is not linear. `onWarning` receives PEFT's warning when `exclude_modules` is
 * set but excluded nothing.
 */
export function selectModules(
  config: IA3Config,
  modules: readonly ModuleInfo[],
  options: { readonly onWarning?: (message: string) => void } = {},
): SelectedModule[] {
  const targets = resolvedTargets(config);
  const seen = new Set<string>();
  const excluded: string[] = [];
  const unmatched: string[] = [];
  const selected: SelectedModule[] = [];
  for (const m of modules) {
    if (seen.has(m.path)) throw new InputError(`module path "${m.path}" is listed twice`);
    seen.add(m.path);
    if (m.path === '') continue;
    if (isExcluded(config, m.path) || isModuleToSave(config, m.path)) excluded.push(m.path);
    else if (!matchesTargets(targets, m.path)) unmatched.push(m.path);
    else {
      if (m.supported === false) {
        throw new InputError(`Target module ${m.path} is not supported. Currently, only linear layers (torch.nn.Linear and Conv1D: a MatMul or Gemm with a constant weight) are supported.`);
      }
      selected.push({ path: m.path, feedforward: isFeedforward(config, m.path) });
    }
  }

  // PEFT's error cases, in its order and with its messages.
  if (selected.length === 0) {
    if (excluded.length > 0 && unmatched.length === 0) {
      throw new NoMatchingModulesError('All modules were excluded. This is likely unintended. Check your `target_modules`, `exclude_modules` and `modules_to_save` configuration.');
    }
    const targetsEmpty = typeof targets === 'string' ? targets === '' : targets.size === 0;
    if (excluded.length === 0 && unmatched.length > 0 && targetsEmpty) {
      throw new NoMatchingModulesError('No `target_modules` passed but also no `target_parameters` found. Please check the values for these arguments.');
    }
    if (excluded.length === 0 && unmatched.length > 0) {
      throw new NoMatchingModulesError(`Target modules ${pythonStr(targets)} not found in the base model. Please check the target modules and try again.`);
    }
    throw new NoMatchingModulesError('No modules were targeted for adaptation. This might be caused by a combination of mismatched target modules and excluded modules. Please check your `target_modules` and `exclude_modules` configuration. You may also have only targeted modules that are marked to be saved (`modules_to_save`).');
  }
  const ex = config.excludeModules;
  if (ex !== null && (typeof ex === 'string' ? ex !== '' : ex.size > 0) && excluded.length === 0) {
    options.onWarning?.(`You have passed exclude_modules=${pythonStr(ex)} but no modules were excluded. Please check that exclude_modules was set correctly.`);
  }
  return selected;
}

function resolvedTargets(config: IA3Config): ReadonlySet<string> | string {
  const t = config.targetModules;
  if (t === null) {
    throw new InputError('target_modules is not resolved: call config.resolveForModelType(model_type) first, or specify `target_modules`');
  }
  if (config.isAllLinear) {
    throw new InputError("target_modules is 'all-linear': expand it with expandAllLinear(config, { linearModules, outputLayer }) first");
  }
  return t;
}

function matchesTargets(t: ReadonlySet<string> | string, path: string): boolean {
  if (typeof t === 'string') return fullMatch(t, 'target_modules').test(path);
  return t.has(path) || [...t].some((x) => path.endsWith('.' + x));
}

// ---------------------------------------------------------------------------------------------
// Python regular expressions in JavaScript

// Compiled patterns, keyed by kind and source; bounded so untrusted configs cannot grow it forever.
const cache = new Map<string, RegExp>();

function compileCached(key: string, make: () => RegExp): RegExp {
  let re = cache.get(key);
  if (re === undefined) {
    if (cache.size >= 256) cache.clear();
    re = make();
    cache.set(key, re);
  }
  return re;
}

/** A RegExp that matches exactly when Python's `re.fullmatch(pattern, s)` does (for module paths). */
export function fullMatch(pattern: string, field = 'pattern'): RegExp {
  return compileCached(`full\0${pattern}`, () => {
    const { source, flags } = translatePythonRegex(pattern, field);
    return build(`^(?:${source})$`, flags, pattern, field);
  });
}

// PEFT: re.match(rf"(^|.*\.){m}($|\..*)", key) — the name is spliced into the pattern unescaped.
function modulesToSaveGuard(name: string): RegExp {
  return compileCached(`save\0${name}`, () => {
    const { source, flags } = translatePythonRegex(name, 'modules_to_save');
    return build(`^(?:(^|.*\\.)${source}($|\\..*))`, flags, name, 'modules_to_save');
  });
}

function build(source: string, flags: string, pattern: string, field: string): RegExp {
  try {
    return new RegExp(source, flags);
  } catch (e) {
    throw new InputError(`${field}: ${JSON.stringify(pattern)} is not a regular expression this toolkit can run: ${(e as Error).message}`);
  }
}

/**
 * Translates Python `re` syntax to JavaScript: `(?P<n>…)` → `(?<n>…)`, `(?P=n)` → `\k<n>`,
 * `\A` / `\Z` → input start / end, `(?#…)` comments dropped, a leading `]` in a set made literal,
 * leading global flags `(?i)`, `(?s)`, `(?m)` → RegExp flags (`(?a)`, `(?u)` change nothing for
 * ASCII module paths). Constructs JavaScript lacks (verbose mode, `(?L)`) throw InputError.
 */
export function translatePythonRegex(pattern: string, field = 'pattern'): { source: string; flags: string } {
  const unsupported = (what: string): never => {
    throw new InputError(`${field}: ${JSON.stringify(pattern)} uses ${what}, which JavaScript regular expressions lack`);
  };
  let i = 0;
  let flags = '';
  for (let m = /^\(\?([aiLmsux]+)\)/.exec(pattern); m !== null; m = /^\(\?([aiLmsux]+)\)/.exec(pattern.slice(i))) {
    for (const f of m[1]!) {
      if (f === 'x') unsupported('verbose mode (?x)');
      if (f === 'L') unsupported('locale mode (?L)');
      if ((f === 'i' || f === 's' || f === 'm') && !flags.includes(f)) flags += f;
    }
    i += m[0].length;
  }
  let out = '';
  while (i < pattern.length) {
    const c = pattern[i]!;
    if (c === '\\') {
      const n = pattern[i + 1];
      if (n === undefined) unsupported('a trailing backslash');
      if (n === 'A') out += '(?<![\\s\\S])';
      else if (n === 'Z') out += '(?![\\s\\S])';
      else out += c + n;
      i += 2;
    } else if (c === '[') {
      let j = i + 1;
      out += '[';
      if (pattern[j] === '^') { out += '^'; j++; }
      if (pattern[j] === ']') { out += '\\]'; j++; } // literal in Python, an empty set in JavaScript
      for (;;) {
        const d = pattern[j];
        if (d === undefined) unsupported('an unterminated character set');
        if (d === ']') break;
        if (d === '\\') { out += pattern.slice(j, j + 2); j += 2; }
        else { out += d; j++; }
      }
      out += ']';
      i = j + 1;
    } else if (pattern.startsWith('(?P<', i)) {
      out += '(?<';
      i += 4;
    } else if (pattern.startsWith('(?P=', i)) {
      const close = pattern.indexOf(')', i);
      if (close < 0) unsupported('an unterminated (?P=name)');
      out += `\\k<${pattern.slice(i + 4, close)}>`;
      i = close + 1;
    } else if (pattern.startsWith('(?#', i)) {
      const close = pattern.indexOf(')', i);
      if (close < 0) unsupported('an unterminated comment');
      i = close + 1;
    } else {
      out += c;
      i++;
    }
  }
  return { source: out, flags };
}

// str() of a PEFT selection in an f-string: a regex as is, a set as Python's repr (sorted here;
// Python's set order is arbitrary).
function pythonStr(s: ReadonlySet<string> | string): string {
  if (typeof s === 'string') return s;
  if (s.size === 0) return 'set()';
  return `{${[...s].sort(compareCodePoints).map(pythonStrRepr).join(', ')}}`;
}

function pythonStrRepr(s: string): string {
  const quote = s.includes("'") && !s.includes('"') ? '"' : "'";
  let out = quote;
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (ch === '\\' || ch === quote) out += '\\' + ch;
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (c < 0x20 || (c >= 0x7f && c <= 0xa0)) out += '\\x' + c.toString(16).padStart(2, '0');
    else out += ch;
  }
  return out + quote;
}
