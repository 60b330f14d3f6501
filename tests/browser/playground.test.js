// The playground in a real browser against a real vidgate, as a new user tries
// it: enter a key, drop an image, set 3 s 720p with sound (buttons say which is
// pressed), see the price next to Generate, submit, watch the task complete in
// the history with its prompt and time and its video (with its Opus sound) play
// to the end; remove an end frame; a bad image, a failed task and a shot's error
// each show where they belong and a failed task keeps its error after later
// clicks; cancel a running task; make a custom element and offer it to
// image-to-video; every model of GET /v1/models offered with its own fields
// (a duration range or choice, fixed qualities, frames or reference images, a
// video drop zone) and a video edit made from a dropped MP4, priced on the
// video's length. No console error, no failed request (the favicon included)
// except the one bad upload. Screenshots land in tests/browser/output/.
const fs = require('fs');
const path = require('path');
const { png, check, launch, watchedPage, until } = require('./common');

const [url, key] = process.argv.slice(2);
const out = path.join(__dirname, 'output');
fs.mkdirSync(out, { recursive: true });

async function drop(page, selector, file, name, type = 'image/png') {
  const b64 = fs.readFileSync(file).toString('base64');
  const dt = await page.evaluateHandle(([data, n, ty]) => {
    const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
    const t = new DataTransfer();
    t.items.add(new File([bytes], n, { type: ty }));
    return t;
  }, [b64, name, type]);
  await page.dispatchEvent(selector, 'dragover', { dataTransfer: dt });
  await page.dispatchEvent(selector, 'drop', { dataTransfer: dt });
}

// Creates a task through the API from the page (as another client of the same key would).
async function createTask(page, body) {
  const [status, task] = await page.evaluate(async ([k, b]) => {
    const r = await fetch('/v1/videos/generations', { method: 'POST', headers: { Authorization: 'Bearer ' + k, 'Content-Type': 'application/json' }, body: JSON.stringify(b) });
    return [r.status, await r.json()];
  }, [key, body]);
  check(status === 200, `create answered ${status}: ${JSON.stringify(task)}`);
  return task;
}

(async () => {
  const start = path.join(out, 'start.png');
  const small = path.join(out, 'small.png');
  fs.writeFileSync(start, png(640, 400));
  fs.writeFileSync(small, png(100, 100));
  const browser = await launch();
  try {
    const page = await watchedPage(browser, { width: 1280, height: 900 });
    await page.goto(url);
    check(await page.$eval('link[rel=icon]', (l) => l.href.endsWith('/assets/favicon.svg')), 'favicon link');
    await page.fill('#keyInput', key);
    await page.click('#keySave');
    await page.waitForSelector('#app:not(.hidden)');

    // Drop zones are labelled by their visible label.
    const startName = await page.$eval('#dropStart', (d) => d.getAttribute('aria-labelledby').split(' ').map((id) => document.getElementById(id).textContent).join(' '));
    check(startName.startsWith('Start frame'), `drop zone label: ${startName}`);

    await drop(page, '#dropStart', start, 'start.png');
    await page.waitForSelector('#dropStart img');
    await page.fill('#prompt', 'slow zoom in over the hills');
    await page.$eval('#duration', (el) => { el.value = 3; el.dispatchEvent(new Event('input')); });
    check((await page.textContent('#price')).trim() === '16.2 credits', 'price');
    check((await page.textContent('#priceUsd')).trim() === '$0.225', 'USD price');
    // The price sits next to Generate.
    check(await page.$eval('#submit', (b) => b.parentElement.contains(document.getElementById('price'))), 'price beside Generate');
    // Sound on: the price follows, the buttons say which is pressed.
    check(await page.getAttribute('#sound button[data-v="off"]', 'aria-pressed') === 'true', 'off pressed');
    await page.click('#sound button[data-v="on"]');
    check(await page.getAttribute('#sound button[data-v="on"]', 'aria-pressed') === 'true', 'on pressed');
    check(await page.getAttribute('#sound button[data-v="off"]', 'aria-pressed') === 'false', 'off released');
    check((await page.textContent('#price')).trim() === '24.3 credits', 'price with sound');
    check((await page.textContent('#priceUsd')).trim() === '$0.338', 'USD price with sound');

    // An end frame can be removed again.
    await drop(page, '#dropEnd', start, 'end.png');
    await page.waitForSelector('#dropEnd img');
    await page.click('#clearEnd');
    check(await page.$('#dropEnd img') === null, 'end frame removed');
    check(await page.isHidden('#clearEnd'), 'remove button hidden again');

    await page.click('#submit');
    await until(() => page.$eval('#announce', (a) => a.textContent.startsWith('Task created')), 5000, 'the create to be announced');
    await page.waitForSelector('.task[data-status="completed"] video', { timeout: 120000 });
    const item = await page.$('.task[data-status="completed"]');
    check((await item.$eval('.prompt', (p) => p.textContent)) === 'slow zoom in over the hills', 'prompt on the history item');
    check((await item.$eval('.when', (p) => p.textContent)).length > 5, 'time on the history item');
    const played = await page.$eval('.task[data-status="completed"] video', (v) => new Promise((resolve) => {
      v.muted = true;
      v.onended = () => resolve({ duration: v.duration, audioBytes: v.webkitAudioDecodedByteCount });
      v.play().catch((e) => resolve('play failed: ' + e));
    }));
    check(Math.abs(played.duration - 3) < 0.05, `the video did not play to its end: ${JSON.stringify(played)}`);
    check(played.audioBytes > 0, `the browser decoded no audio: ${JSON.stringify(played)}`);
    check((await page.textContent('#histCount')).includes('1 completed'), 'history line');
    check((await page.textContent('#announce')).includes('completed'), 'completion announced');
    const resultUrl = await page.$eval('.task[data-status="completed"] video', (v) => v.src);

    // Every model of GET /v1/models is offered, each with its own fields.
    const served = await page.evaluate(async (k) => (await (await fetch('/v1/models', { headers: { Authorization: 'Bearer ' + k } })).json()).data.map((m) => m.id), key);
    const offered = await page.$$eval('#model option', (os) => os.map((o) => o.value));
    check(JSON.stringify(offered) === JSON.stringify(served), `models offered: ${offered}`);
    const visible = (id) => page.$eval('#' + id, (e) => !e.closest('.hidden'));
    await page.selectOption('#model', 'kling-v3-text-to-video');
    check(!(await visible('imageFields')) && (await visible('aspectBox')) && (await visible('durationBox')), 'text to video fields');
    check((await page.$$eval('#quality button', (bs) => bs.map((b) => b.dataset.v))).join() === '720p,1080p,4k', 'v3 qualities');
    await page.selectOption('#model', 'kling-o1-image-to-video');
    check(await visible('durationPickBox') && !(await visible('durationBox')), 'O1 duration is a choice');
    check((await page.$$eval('#durationPick option', (os) => os.map((o) => o.value))).join() === '5,10', 'O1 durations');
    check(await visible('imagesBox') && (await page.textContent('#imagesLabel')).startsWith('Frames'), 'O1 takes frames');
    check(!(await visible('qualityBox')) && (await page.textContent('#fixedNote')).includes('1080p'), 'O1 quality is fixed');
    await page.selectOption('#model', 'kling-v3-turbo-image-to-video');
    check(!(await visible('endBox')) && !(await visible('soundBox')), 'turbo has no end frame and fixed sound');
    await page.selectOption('#model', 'kling-v3-motion-control');
    check(await visible('orientationBox') && (await visible('videoBox')) && (await visible('imagesBox')), 'motion control fields');
    check(!(await visible('durationBox')) && !(await visible('durationPickBox')), 'motion control has no duration');

    // A model that takes a video: the result above, dropped on the video zone, edited.
    await page.selectOption('#model', 'kling-o3-video-edit');
    check(await visible('videoBox') && !(await visible('durationBox')), 'video edit fields');
    check((await page.textContent('#price')).includes('credits/s'), 'priced per input second before a video is chosen');
    const mp4 = path.join(out, 'input.mp4');
    fs.writeFileSync(mp4, Buffer.from(await page.evaluate(async (u) => {
      const b = new Uint8Array(await (await fetch(u)).arrayBuffer());
      let s = ''; for (const x of b) s += String.fromCharCode(x); return btoa(s);
    }, resultUrl), 'base64'));
    await drop(page, '#dropVideo', mp4, 'input.mp4', 'video/mp4');
    await page.waitForSelector('#dropVideo video');
    await until(async () => (await page.textContent('#price')).trim() === '24.3 credits', 10000,
      'the price of 3 s of input video').catch(async (e) => { throw new Error(e.message + ': ' + await page.textContent('#price') + ' ' + await page.textContent('#priceUsd') + ' ' + await page.textContent('#formErr') + ' ' + await page.textContent('#videoErr')); });
    await page.fill('#prompt', 'make it dusk');
    await page.click('#submit');
    await page.waitForSelector('.task[data-status="completed"]:has-text("kling-o3-video-edit") video', { timeout: 180000 });
    await page.selectOption('#model', 'kling-v3-image-to-video');

    // A failed task keeps its error through later actions.
    const failing = await createTask(page, { model: 'kling-v3-image-to-video', image_start: 'https://unreachable.invalid/frame.png', duration: 3 });
    await page.waitForSelector(`.task[data-id="${failing.id}"][data-status="failed"] .task-err`, { timeout: 60000 });
    const failText = await page.textContent(`.task[data-id="${failing.id}"] .task-err`);
    check(failText.length > 10, `failed task error: ${failText}`);
    page.expectFailure(/^400 \/v1\/files$/);
    await page.setInputFiles('#fileEnd', small);
    await page.waitForFunction(() => document.querySelector('.err[data-param="image_end"]').textContent.length > 0);
    check((await page.textContent('.err[data-param="image_end"]')).includes('300'), 'bad image message');
    await page.click('#quality button[data-v="1080p"]');
    await page.click('#submit');
    await page.waitForTimeout(300);
    check((await page.textContent(`.task[data-id="${failing.id}"] .task-err`)) === failText, 'the failed task lost its error text');

    // A shot's error shows at the shot.
    await page.check('#multi');
    await page.fill('.shot[data-index="0"] input[type=text]', '');
    await page.fill('.shot[data-index="1"] input[type=text]', 'then pan right');
    await page.click('#submit');
    await until(() => page.$eval('.shot[data-index="0"] .err', (e) => e.textContent.includes('Shot 1')), 5000, 'the shot error');
    await page.fill('.shot[data-index="0"] input[type=text]', 'open wide');
    await page.fill('.shot[data-index="1"] input[type=number]', '0');
    page.expectFailure(/^400 \/v1\/videos\/generations$/);
    await page.click('#submit');
    await until(() => page.$eval('.shot[data-index="1"] .err', (e) => e.textContent.length > 0), 5000, 'the server\'s shot error');
    await page.uncheck('#multi');

    // A running task can be cancelled from the history.
    const long = [];
    for (let i = 0; i < 3; i++) long.push(await createTask(page, { model: 'kling-v3-text-to-video', prompt: 'a long one', duration: 15, quality: '1080p' }));
    const target = long[2].id;
    await page.waitForSelector(`.task[data-id="${target}"] button.cancel`, { timeout: 10000 });
    await page.click(`.task[data-id="${target}"] button.cancel`);
    await page.waitForSelector(`.task[data-id="${target}"][data-status="failed"]`, { timeout: 30000 });
    check((await page.textContent(`.task[data-id="${target}"] .task-err`)).includes('request_cancelled'), 'cancelled');

    // A custom element, then offered to image-to-video.
    await page.selectOption('#model', 'kling-custom-element');
    check((await page.textContent('#price')).trim() === '1 credits', 'element price');
    check((await page.textContent('#submit')).trim() === 'Create element', 'element button');
    await page.fill('#elName', 'Hills');
    await page.fill('#elDesc', 'Rolling green hills');
    await drop(page, '#dropFrontal', start, 'front.png');
    await page.waitForSelector('#dropFrontal img');
    await drop(page, '#dropRefs', start, 'ref.png');
    await page.waitForSelector('#refs img');
    await page.click('#submit');
    await page.waitForSelector('.task[data-status="completed"] .result-data', { timeout: 60000 });
    await page.selectOption('#model', 'kling-v3-image-to-video');
    await page.waitForSelector('#elementPick:not(.hidden) #elements input[type=checkbox]');

    page.assertClean();
    await page.screenshot({ path: path.join(out, 'desktop.png'), fullPage: true });
    await page.setViewportSize({ width: 390, height: 844 });
    await page.screenshot({ path: path.join(out, 'phone.png') });
    console.log('playground: 1 passed, 0 failed');
  } finally {
    await browser.close();
  }
})().catch((e) => { console.error('playground browser test failed:', e.message); process.exit(1); });
