// Text as Python writes it, for files that must be byte-for-byte what PEFT (Python) writes:
// strings in code-point order (Python's `sorted`, and Rust's for safetensors headers) and
// `json.dumps(value, indent=2, sort_keys=True)` (ensure_ascii=True, allow_nan=True).

/** A JSON value. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** Orders strings by Unicode code point (Python's str order, = UTF-8 byte order; UTF-16 order differs for astral). */
export function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    const sx = x >= 0xd800 && x <= 0xdfff;
    const sy = y >= 0xd800 && y <= 0xdfff;
    if (sx !== sy) return sx ? 1 : -1; // a surrogate (astral code point) sorts after U+E000..U+FFFF
    return x - y;
  }
  return a.length - b.length;
}

/**
 * Serialises like Python's `json.dumps(value, indent, sort_keys=True)`: items separated by ","
 * and a newline, keys by ": ", empty containers as [] and {}, non-ASCII as \uXXXX (lowercase hex),
 * floats as Python's repr. JavaScript has one number type: integral values within the safe range
 * are written as Python ints, others as Python floats.
 */
export function pythonJsonDumps(value: JsonValue, indent = 2): string {
  const encode = (v: JsonValue, level: number): string => {
    if (v === null) return 'null';
    if (v === true) return 'true';
    if (v === false) return 'false';
    if (typeof v === 'number') return pythonNumber(v);
    if (typeof v === 'string') return pythonJsonString(v);
    const inner = '\n' + ' '.repeat(indent * (level + 1));
    const outer = '\n' + ' '.repeat(indent * level);
    if (Array.isArray(v)) {
      if (v.length === 0) return '[]';
      return '[' + inner + v.map((x) => encode(x, level + 1)).join(',' + inner) + outer + ']';
    }
    const keys = Object.keys(v).sort(compareCodePoints);
    if (keys.length === 0) return '{}';
    return '{' + inner + keys.map((k) => `${pythonJsonString(k)}: ${encode(v[k]!, level + 1)}`).join(',' + inner) + outer + '}';
  };
  return encode(value, 0);
}

/** A string as Python's json module writes it with ensure_ascii=True. */
export function pythonJsonString(s: string): string {
  let out = '"';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    const ch = s[i]!;
    if (ch === '"') out += '\\"';
    else if (ch === '\\') out += '\\\\';
    else if (c >= 0x20 && c <= 0x7e) out += ch;
    else if (c === 0x0a) out += '\\n';
    else if (c === 0x0d) out += '\\r';
    else if (c === 0x09) out += '\\t';
    else if (c === 0x08) out += '\\b';
    else if (c === 0x0c) out += '\\f';
    else out += '\\u' + c.toString(16).padStart(4, '0'); // UTF-16 units: astral → surrogate pair
  }
  return out + '"';
}

function pythonNumber(x: number): string {
  if (Number.isNaN(x)) return 'NaN';
  if (x === Infinity) return 'Infinity';
  if (x === -Infinity) return '-Infinity';
  if (Number.isSafeInteger(x) && !Object.is(x, -0)) return String(x);
  return pythonFloatRepr(x);
}

/**
 * Python's repr() of a finite float: the shortest round-tripping digits (as JavaScript), in fixed
 * notation when the decimal exponent is in [-4, 16), else d.ddde±XX; integral values end in ".0".
 */
export function pythonFloatRepr(x: number): string {
  if (!Number.isFinite(x)) return x > 0 ? 'inf' : x < 0 ? '-inf' : 'nan';
  const sign = x < 0 || Object.is(x, -0) ? '-' : '';
  const [mantissa, expText] = Math.abs(x).toExponential().split('e') as [string, string];
  const digits = mantissa.replace('.', '');
  const exp = Number(expText);
  if (exp < -4 || exp >= 16) {
    const m = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
    return `${sign}${m}e${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`;
  }
  if (exp < 0) return `${sign}0.${'0'.repeat(-exp - 1)}${digits}`;
  const intPart = digits.slice(0, exp + 1).padEnd(exp + 1, '0');
  const frac = digits.slice(exp + 1);
  return `${sign}${intPart}.${frac === '' ? '0' : frac}`;
}
