// The playground in a real browser against a real vidgate: enter a key, drop an
// image, set 3 s 720p with sound, check the displayed price, submit, watch the
// task complete in the history and its video (with its Opus sound) play to the
// end; a bad image shows its error.
// Screenshots at desktop and phone width land in tests/browser/output/.
const { chromium } = require('playwright-core');
const fs = require('fs');
const path = require('path');
const zlib = require('zlib');

const [url, key] = process.argv.slice(2);
const out = path.join(__dirname, 'output');
fs.mkdirSync(out, { recursive: true });

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

(async () => {
  const start = path.join(out, 'start.png');
  const small = path.join(out, 'small.png');
  fs.writeFileSync(start, png(640, 400));
  fs.writeFileSync(small, png(100, 100));
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--headless', '--disable-gpu', '--disable-background-networking'],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(url);
    await page.fill('#keyInput', key);
    await page.click('#keySave');
    await page.waitForSelector('#app:not(.hidden)');
    // Drag and drop the start frame onto its drop zone (a real drop event).
    const b64 = fs.readFileSync(start).toString('base64');
    const dt = await page.evaluateHandle((data) => {
      const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
      const t = new DataTransfer();
      t.items.add(new File([bytes], 'start.png', { type: 'image/png' }));
      return t;
    }, b64);
    await page.dispatchEvent('#dropStart', 'dragover', { dataTransfer: dt });
    await page.dispatchEvent('#dropStart', 'drop', { dataTransfer: dt });
    await page.waitForSelector('#dropStart img');
    await page.fill('#prompt', 'slow zoom in over the hills');
    await page.$eval('#duration', (el) => { el.value = 3; el.dispatchEvent(new Event('input')); });
    const price = await page.textContent('#price');
    check(price.trim() === '16.2 credits', `price shows ${price}`);
    check((await page.textContent('#priceUsd')).trim() === '$0.225', 'USD price');
    // Sound on: the price follows, and the video carries an audio track.
    await page.click('#sound button[data-v="on"]');
    const withSound = await page.textContent('#price');
    check(withSound.trim() === '24.3 credits', `price with sound shows ${withSound}`);
    check((await page.textContent('#priceUsd')).trim() === '$0.338', 'USD price with sound');
    await page.click('#submit');
    await page.waitForSelector('.task[data-status="completed"] video', { timeout: 120000 });
    const duration = await page.$eval('.task video', (v) => new Promise((resolve) => {
      v.muted = true;
      v.onended = () => resolve({ duration: v.duration, audioBytes: v.webkitAudioDecodedByteCount });
      v.play().catch((e) => resolve('play failed: ' + e));
    }));
    check(Math.abs(duration.duration - 3) < 0.05, `the video did not play to its end: ${JSON.stringify(duration)}`);
    check(duration.audioBytes > 0, `the browser decoded no audio: ${JSON.stringify(duration)}`);
    check((await page.textContent('#histCount')).includes('1 completed'), 'history line');
    await page.setInputFiles('#fileEnd', small);
    await page.waitForFunction(() => document.querySelector('.err[data-param="image_end"]').textContent.length > 0);
    const msg = await page.textContent('.err[data-param="image_end"]');
    check(msg.includes('300'), `bad image message: ${msg}`);
    check(errors.length === 0, `page errors: ${errors.join('; ')}`);
    await page.screenshot({ path: path.join(out, 'desktop.png'), fullPage: true });
    await page.setViewportSize({ width: 390, height: 844 });
    await page.screenshot({ path: path.join(out, 'phone.png') });
    console.log('1 passed, 0 failed');
  } finally {
    await browser.close();
  }
})().catch((e) => { console.error('browser test failed:', e.message); process.exit(1); });
