import { describe, expect, it } from 'vitest';
import { adapterFilesFromFileList, downloadAdapter, fetchAdapter } from '../../src/io/files.js';
import { InputError } from '../../src/errors.js';

function fileAt(path: string, content: string | Uint8Array): File {
  const f = new File([content as BlobPart], path.split('/').pop()!);
  Object.defineProperty(f, 'webkitRelativePath', { value: path });
  return f;
}

describe('adapterFilesFromFileList', () => {
  it('finds both files anywhere in a picked folder, preferring the pair in one folder', async () => {
    const files = [
      fileAt('run/readme.md', 'x'),
      fileAt('run/old/adapter_config.json', '{"old": true}'),
      fileAt('run/best/adapter_model.safetensors', new Uint8Array([1, 2, 3])),
      fileAt('run/best/adapter_config.json', '{"best": true}'),
    ];
    const got = await adapterFilesFromFileList(files);
    expect([...got['adapter_model.safetensors']]).toEqual([1, 2, 3]);
    expect(got['adapter_config.json']).toBe('{"best": true}');
  });

  it('lists every missing file', async () => {
    await expect(adapterFilesFromFileList([fileAt('a/notes.txt', 'x')])).rejects.toThrow(
      /lack adapter_model\.safetensors and adapter_config\.json \(got 'a\/notes\.txt'\)/,
    );
    await expect(adapterFilesFromFileList([fileAt('a/adapter_config.json', '{}')])).rejects.toThrow(InputError);
    await expect(adapterFilesFromFileList([fileAt('a/adapter_config.json', '{}')])).rejects.toThrow(/lack adapter_model\.safetensors \(/);
  });
});

describe('fetchAdapter', () => {
  it('fetches both files from a folder URL, keeping the query string', async () => {
    const asked: string[] = [];
    const fetch = async (url: string): Promise<Response> => {
      asked.push(url);
      return url.includes('safetensors') ? new Response(new Uint8Array([9, 8])) : new Response('{"peft_type": "IA3"}');
    };
    const got = await fetchAdapter('https://h.example/a/b/?sig=1', { fetch });
    expect(asked.sort()).toEqual(['https://h.example/a/b/adapter_config.json?sig=1', 'https://h.example/a/b/adapter_model.safetensors?sig=1']);
    expect([...got['adapter_model.safetensors']]).toEqual([9, 8]);
    expect(got['adapter_config.json']).toBe('{"peft_type": "IA3"}');
  });

  it('names the URL and the HTTP status of a failed request', async () => {
    const fetch = async (url: string): Promise<Response> => (url.endsWith('.json') ? new Response('nope', { status: 404 }) : new Response(new Uint8Array(1)));
    const err = await fetchAdapter(new URL('https://h.example/x'), { fetch }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InputError);
    expect((err as Error).message).toBe('could not fetch https://h.example/x/adapter_config.json: HTTP 404');
    const down = async (): Promise<Response> => {
      throw new TypeError('network down');
    };
    await expect(fetchAdapter('/ad', { fetch: down })).rejects.toThrow(/could not fetch \/ad\/adapter_(model\.safetensors|config\.json): network down/);
  });
});

describe('downloadAdapter', () => {
  it('needs a page', () => {
    expect(() => downloadAdapter({ 'adapter_model.safetensors': new Uint8Array(1), 'adapter_config.json': '{}' })).toThrow(/needs a browser page/);
  });
});
