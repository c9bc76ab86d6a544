// Where a model's files may be read from: the one rule for external-data locations.
//
// The ONNX spec makes a tensor's external-data `location` a path relative to the folder of the model
// file. A file is untrusted input, so a location that could name anything outside that folder is
// refused, whichever loader reads it (URLs, picked files, bytes with `externalData`, file paths):
// absolute paths (`/etc/x`, `C:\x`, `\\server\share`), scheme- or host-relative URLs (`http:`,
// `//host/x`, `data:`, `blob:`), any `..` segment (also `..\`, nested `a/../../x` — the bypass of
// onnx's CVE-2024-27318 — and their percent-encoded forms such as `%2e%2e/`, decoded before the
// check), colons (drive letters, schemes, NTFS streams) and control characters. A URL is then built
// by percent-encoding each segment, so the server sees exactly the path the rule accepted, and it
// never carries the model URL's query string (a token meant for one file goes to no other).

/** Longest location accepted (characters); real ones are file names. */
const MAX_LOCATION = 1024;

/**
 * The normalised relative path (`/`-separated, no `.` or empty segments) of an external-data
 * location, or the reason it is refused (a phrase completing "the location …").
 */
export function relativeLocation(location: string): { path: string } | { problem: string } {
  if (typeof location !== 'string' || location.length === 0) return { problem: 'is empty' };
  if (location.length > MAX_LOCATION) return { problem: `is ${location.length} characters long (at most ${MAX_LOCATION})` };
  // Each percent-decoding of the location is checked too: a server (or a second loader) may decode.
  const forms = [location];
  for (let f = location; forms.length < 4; ) {
    let next: string;
    try {
      next = decodeURIComponent(f);
    } catch {
      break; // not percent-encoded text: the raw form is what is used
    }
    if (next === f) break;
    forms.push((f = next));
  }
  for (const form of forms) {
    const problem = formProblem(form);
    if (problem) return { problem: form === location ? problem : `${problem} once percent-decoded ('${form}')` };
  }
  const path = normLocation(location);
  return path === '' ? { problem: 'names no file' } : { path };
}

function formProblem(form: string): string | undefined {
  if (/[\u0000-\u001f\u007f]/.test(form)) return 'contains a control character';
  const p = form.replace(/\\/g, '/');
  if (p.startsWith('/')) return p.startsWith('//') ? 'is a host-relative URL or network path' : 'is an absolute path';
  if (/^[a-z][a-z0-9+.-]*:/i.test(p)) return /^[a-z]:/i.test(p) ? 'is an absolute Windows path' : `is a URL (scheme '${p.slice(0, p.indexOf(':'))}:')`;
  if (p.includes(':')) return 'contains a colon';
  // '..' (and what Windows trims to it: '.. ', '...') leaves the folder.
  if (p.split('/').some((s) => /^\.{2,}[ .]*$/.test(s))) return "has a '..' segment";
  return undefined;
}

/** A location as a `/`-separated path without `.` or empty segments ('./x', 'a//x', 'a\\x' name 'x', 'a/x'). */
export function normLocation(location: string): string {
  return location
    .replace(/\\/g, '/')
    .split('/')
    .filter((s) => s !== '' && s !== '.')
    .join('/');
}

/**
 * The URL of `path` (a relative path from `relativeLocation`, or one the loader chose, such as
 * 'config.json') in the folder `dirUrl` (ending in '/', or '' for the page's own folder): each
 * segment percent-encoded, no query string.
 */
export function urlInFolder(dirUrl: string, path: string): string {
  return dirUrl + path.split('/').map(encodeURIComponent).join('/');
}
