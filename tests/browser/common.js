// Shared by the browser tests: a real PNG made here, Debian's Chromium launched
// headless, a page that records every console error, uncaught exception and
// failed response, and small checks.
const { chromium } = require('playwright-core');
const zlib = require('zlib');

// A real PNG: a gradient of w x h pixels.
function png(w, h) {
  const rows = [];
  for (let y = 0; y < h; y++) {
    const row = Buffer.alloc(1 + w * 3);
    for (let x = 0; x < w; x++) {
      row[1 + x * 3] = (x * 255 / w) | 0;
      row[2 + x * 3] = (y * 255 / h) | 0;
      row[3 + x * 3] = 140;
    }
    rows.push(row);
  }
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (buf) => { let c = 0xffffffff; for (const b of buf) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8); return (c ^ 0xffffffff) >>> 0; };
  const chunk = (type, data) => {
    const len = Buffer.alloc(4); len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type), data]);
    const c = Buffer.alloc(4); c.writeUInt32BE(crc(td));
    return Buffer.concat([len, td, c]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0); ihdr.writeUInt32BE(h, 4); ihdr[8] = 8; ihdr[9] = 2;
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr),
    chunk('IDAT', zlib.deflateSync(Buffer.concat(rows))), chunk('IEND', Buffer.alloc(0))]);
}

function check(cond, msg) { if (!cond) throw new Error(msg); }

function launch() {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--headless', '--disable-gpu', '--disable-background-networking'],
  });
}

// A page whose console errors, uncaught exceptions and 4xx/5xx responses are
// kept; `expectFailure(pattern)` lets one deliberate failing request through.
async function watchedPage(browser, viewport) {
  const page = await browser.newPage({ viewport });
  const seen = { errors: [], failures: [], allowed: [] };
  page.on('pageerror', (e) => seen.errors.push('uncaught: ' + e.message));
  page.on('console', (m) => { if (m.type() === 'error') seen.errors.push('console: ' + m.text()); });
  page.on('response', (r) => { if (r.status() >= 400) seen.failures.push(r.status() + ' ' + new URL(r.url()).pathname); });
  page.on('dialog', (d) => d.accept());
  page.expectFailure = (pattern) => seen.allowed.push(pattern);
  page.assertClean = () => {
    // A deliberate failing request shows in the console as "Failed to load resource";
    // each is allowed once per expectFailure.
    const allowed = [...seen.allowed];
    const take = (line) => {
      const i = allowed.findIndex((p) => p.test(line));
      if (i < 0) return false;
      allowed.splice(i, 1);
      return true;
    };
    const failures = seen.failures.filter((f) => !take(f));
    const errors = seen.errors.filter((e) => !/Failed to load resource: the server responded with a status of 4\d\d/.test(e) || failures.length);
    check(failures.length === 0, 'failed requests: ' + failures.join('; '));
    check(errors.length === 0, 'console errors: ' + errors.join('; '));
  };
  return page;
}

// Polls `fn` until it returns a truthy value or `ms` pass.
async function until(fn, ms, what) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error('timed out waiting for ' + what);
    await new Promise((r) => setTimeout(r, 100));
  }
}

module.exports = { png, check, launch, watchedPage, until };
