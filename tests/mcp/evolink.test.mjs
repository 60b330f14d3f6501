// EvoLink's own MCP server (@evolinkai/evolink-media 1.2.1), pointed at vidgate by
// its base URL alone, driven over stdio by the MCP SDK's client: generate_video
// then check_task to completion for every Kling model its schema can name and
// fill, each result downloaded and checked to be an MP4; values a model does not
// allow come back as errors that name the field (issue 13, item 7).
// Usage: node evolink.test.mjs <vidgate URL> <API key> <path of the MCP server's index.js>
import { deflateSync } from 'node:zlib';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';

const [base, apiKey, serverEntry] = process.argv.slice(2);
const POLL_MS = 1000;
const DEADLINE_MS = 180_000;

// What a user of the tool would send for each model: the tool's generic fields,
// limited to those EvoLink documents for that model (O1 has no quality or sound;
// v3 image-to-video has no aspect_ratio). Images go in `image_urls`, as the tool
// sends them.
const CALLS = [
  { model: 'kling-v3-text-to-video', prompt: 'slow zoom in over a neon city at night', duration: 5, quality: '720p', aspect_ratio: '16:9', generate_audio: true },
  { model: 'kling-v3-image-to-video', prompt: 'the camera pans left', duration: 5, quality: '1080p', image: true, generate_audio: false },
  { model: 'kling-o3-text-to-video', prompt: 'waves rolling onto a beach', duration: 3, quality: '720p', aspect_ratio: '9:16', generate_audio: false },
  { model: 'kling-o3-image-to-video', prompt: 'a gentle drift to the right', duration: 5, quality: '720p', aspect_ratio: '16:9', image: true, generate_audio: true },
  { model: 'kling-o1-image-to-video', prompt: 'slow zoom out', duration: 5, aspect_ratio: '16:9', image: true },
];
// Values the tool's own schema lets through but no Kling model allows, and a model
// the tool can name but not fill (it has no video field): each a 400 naming the field.
const REFUSALS = [
  { args: { model: 'kling-v3-text-to-video', prompt: 'a city', duration: 5, quality: '480p' }, field: /quality/ },
  { args: { model: 'kling-v3-text-to-video', prompt: 'a city', duration: 5, aspect_ratio: 'adaptive' }, field: /aspect_ratio/ },
  { args: { model: 'kling-o3-video-edit', prompt: 'make it snow' }, field: /video_urls?/ },
];

const results = [];
function record(name, ok, detail) {
  results.push({ name, ok, detail });
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${name}${detail ? `: ${detail}` : ''}`);
}
const text = (res) => (res.content ?? []).filter((c) => c.type === 'text').map((c) => c.text).join('\n');
const oneLine = (s) => s.replace(/\s*\n\s*/g, ' | ').slice(0, 400);

// A 640x360 RGB PNG with a gradient and a disc, so the renderer has something to move over.
function png(width, height) {
  const raw = Buffer.alloc((width * 3 + 1) * height);
  for (let y = 0; y < height; y++) {
    const row = y * (width * 3 + 1);
    raw[row] = 0;
    for (let x = 0; x < width; x++) {
      const inDisc = (x - width * 0.6) ** 2 + (y - height * 0.45) ** 2 < (height * 0.22) ** 2;
      const o = row + 1 + x * 3;
      raw[o] = inDisc ? 250 : Math.round((x / width) * 200);
      raw[o + 1] = inDisc ? 200 : Math.round((y / height) * 160) + 40;
      raw[o + 2] = inDisc ? 60 : 180;
    }
  }
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (buf) => {
    let c = 0xffffffff;
    for (const b of buf) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type, data) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const sum = Buffer.alloc(4);
    sum.writeUInt32BE(crc(body));
    return Buffer.concat([len, body, sum]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8-bit RGB, no interlace
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(raw)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

async function upload() {
  const form = new FormData();
  form.append('file', new Blob([png(640, 360)], { type: 'image/png' }), 'start.png');
  const resp = await fetch(`${base}/v1/files`, { method: 'POST', headers: { Authorization: `Bearer ${apiKey}` }, body: form });
  const body = await resp.json();
  if (!resp.ok || typeof body.url !== 'string') throw new Error(`POST /v1/files answered ${resp.status}: ${JSON.stringify(body)}`);
  return body.url;
}

async function isMp4(url) {
  const resp = await fetch(url);
  const bytes = Buffer.from(await resp.arrayBuffer());
  if (resp.status !== 200) return `GET answered ${resp.status}`;
  // An ISO BMFF file starts with a box whose type is `ftyp`.
  if (bytes.length < 1000 || bytes.toString('ascii', 4, 8) !== 'ftyp') return `not an MP4 (${bytes.length} bytes)`;
  return null;
}

const transport = new StdioClientTransport({
  command: process.execPath,
  args: [serverEntry],
  // Only what the server needs: its key, and nothing that could point it elsewhere.
  env: { EVOLINK_API_KEY: apiKey, PATH: process.env.PATH ?? '/usr/bin:/bin' },
  stderr: 'pipe',
});
let serverLog = '';
transport.stderr?.on('data', (d) => { serverLog += d; });
const client = new Client({ name: 'vidgate-ci', version: '1.0.0' });

try {
  await client.connect(transport);
  const tools = (await client.listTools()).tools.map((t) => t.name);
  record('the MCP server offers generate_video and check_task', tools.includes('generate_video') && tools.includes('check_task'), tools.join(', '));

  let imageUrl = null;
  try {
    imageUrl = await upload();
    record('POST /v1/files takes a 640x360 PNG', true, '');
  } catch (e) {
    record('POST /v1/files takes a 640x360 PNG', false, e.message);
  }

  const tasks = [];
  for (const { image, ...call } of CALLS) {
    const args = { ...call, ...(image ? { image_urls: imageUrl ? [imageUrl] : [] } : {}) };
    const res = await client.callTool({ name: 'generate_video', arguments: args });
    const out = text(res);
    const id = out.match(/Task ID: (\S+)/)?.[1];
    if (res.isError || !id) {
      record(`${call.model}: generate_video`, false, oneLine(out));
    } else {
      record(`${call.model}: generate_video`, true, id);
      tasks.push({ model: call.model, id });
    }
  }

  // Follow every accepted task to its end through check_task, polled at POLL_MS.
  const deadline = Date.now() + DEADLINE_MS;
  const open = new Map(tasks.map((t) => [t.id, t]));
  while (open.size && Date.now() < deadline) {
    for (const [id, t] of [...open]) {
      const res = await client.callTool({ name: 'check_task', arguments: { task_id: id } });
      const out = text(res);
      const status = out.match(/Status: (\w+)/)?.[1];
      if (res.isError) {
        record(`${t.model}: check_task`, false, oneLine(out));
        open.delete(id);
      } else if (status === 'completed') {
        const link = out.match(/\[1\] (\S+)/)?.[1];
        const bad = link ? await isMp4(link) : 'no result link in the text';
        record(`${t.model}: check_task follows to completed, result is an MP4`, !bad, bad ?? '');
        open.delete(id);
      } else if (status === 'failed' || status === 'cancelled') {
        record(`${t.model}: check_task follows to completed`, false, oneLine(out));
        open.delete(id);
      }
    }
    if (open.size) await new Promise((r) => setTimeout(r, POLL_MS));
  }
  for (const t of open.values()) record(`${t.model}: check_task follows to completed`, false, `still open after ${DEADLINE_MS / 1000} s`);

  for (const { args, field } of REFUSALS) {
    const res = await client.callTool({ name: 'generate_video', arguments: args });
    const out = text(res);
    const what = `${args.model} ${JSON.stringify(Object.fromEntries(Object.entries(args).filter(([k]) => !['model', 'prompt', 'duration'].includes(k))))}`;
    const ok = res.isError === true && /\[400\]/.test(out) && field.test(out);
    record(`${what} is refused with a 400 naming ${field.source}`, ok, oneLine(out));
  }
} catch (e) {
  record('the MCP session', false, `${e.message}${serverLog ? ` (server stderr: ${oneLine(serverLog)})` : ''}`);
} finally {
  await client.close().catch(() => {});
}

const failed = results.filter((r) => !r.ok).length;
console.log(`mcp: ${results.length - failed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
