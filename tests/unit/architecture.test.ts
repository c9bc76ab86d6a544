// The import rule of docs/architecture.md: src/ is a stack of layers, and a module imports only from
// its own layer or from layers below it. The order is read from the document's "Import order" line,
// so the document and the check cannot drift; a new top-level folder must be placed there.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const DOC = readFileSync(resolve(__dirname, '../../docs/architecture.md'), 'utf8');
/** Bottom to top, as docs/architecture.md states it. */
const LAYERS = [...(/^Import order, bottom to top: (.*)$/m.exec(DOC)?.[1] ?? '').matchAll(/`(\w+)`/g)].map((m) => m[1]!);

const SRC = resolve(__dirname, '../../src');
const files = (dir: string): string[] =>
  readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
/** A file's layer: its top-level folder, or its own name for a file directly in src/. */
const layerOf = (file: string): string => relative(SRC, file).split('/')[0]!.replace(/\.ts$/, '');

describe('architecture', () => {
  it('places every module of src/ in a layer of docs/architecture.md', () => {
    expect(LAYERS.length).toBeGreaterThan(5);
    const unknown = [...new Set(files(SRC).map(layerOf))].filter((l) => !LAYERS.includes(l));
    expect(unknown).toEqual([]);
  });

  it('imports only sideways within a layer or downward', () => {
    const upward: string[] = [];
    for (const file of files(SRC)) {
      const text = readFileSync(file, 'utf8');
      for (const m of text.matchAll(/^\s*(?:import|export)\b[^'"]*?\bfrom\s+'(\.[^']+)'/gm)) {
        const target = resolve(dirname(file), m[1]!.replace(/\?raw$/, ''));
        if (!target.startsWith(SRC + '/')) continue; // shaders and packages
        const [from, to] = [layerOf(file), layerOf(target)];
        if (LAYERS.indexOf(to) > LAYERS.indexOf(from)) upward.push(`${relative(SRC, file)} → ${relative(SRC, target)} (${from} → ${to})`);
      }
    }
    expect(upward).toEqual([]);
  });
});
