// The operator console in a real browser against a real vidgate: sign in with
// the admin key (kept in sessionStorage only), then every page: accounts
// (search, create, grant, limits, disable, a new key), tasks across accounts by
// filter with a task's attempts and callbacks, providers, the margin chart,
// top-up codes and the audit log; a reload stays on its hash route. Strings a
// client chose (an account name, a prompt) show as text and never run. No
// console error and no CSP violation anywhere.
const fs = require('fs');
const path = require('path');
const { check, launch, watchedPage, until } = require('./common');

const [url, apiKey, adminKey] = process.argv.slice(2);
const base = url.replace(/\/$/, '');
const out = path.join(__dirname, 'output');
fs.mkdirSync(out, { recursive: true });
const XSS = '<img src=x onerror="window.__owned=1">';

async function call(method, p, key, body) {
  const r = await fetch(base + p, { method, headers: { Authorization: 'Bearer ' + key, 'Content-Type': 'application/json' }, body: body && JSON.stringify(body) });
  const json = await r.json();
  if (!r.ok) throw new Error(`${method} ${p}: ${r.status} ${JSON.stringify(json)}`);
  return json;
}

(async () => {
  // Something to look at: a completed task (for the margin) and a failed one with a hostile prompt.
  const done = await call('POST', '/v1/videos/generations', apiKey, { model: 'kling-v3-text-to-video', prompt: 'console check', duration: 3 });
  const failed = await call('POST', '/v1/videos/generations', apiKey, { model: 'kling-v3-text-to-video', prompt: XSS, duration: 15 });
  await call('POST', `/v1/tasks/${failed.id}/cancel`, apiKey);
  await until(async () => (await call('GET', `/v1/tasks/${done.id}`, apiKey)).status === 'completed', 120000, 'the task to complete');

  const browser = await launch();
  try {
    const page = await watchedPage(browser, { width: 1360, height: 900 });
    const csp = [];
    await page.exposeFunction('__cspViolation', (v) => csp.push(v));
    await page.addInitScript(() => document.addEventListener('securitypolicyviolation', (e) => window.__cspViolation(e.violatedDirective + ' ' + e.blockedURI)));

    await page.goto(base + '/admin#/accounts');
    await page.waitForSelector('#signin:not(.hidden)');
    page.expectFailure(/^401 \/admin\/accounts$/);
    await page.fill('#adminKey', 'sk-wrong');
    await page.click('#signinForm button[type=submit]');
    await until(() => page.$eval('#signinErr', (e) => e.textContent.includes('refused')), 5000, 'a refused key');
    await page.fill('#adminKey', adminKey);
    await page.click('#signinForm button[type=submit]');
    await page.waitForSelector('#nav:not(.hidden)');
    check(await page.evaluate(() => sessionStorage.getItem('vidgate.admin')) === adminKey, 'key in sessionStorage');
    check(await page.evaluate(() => Object.keys(localStorage).length) === 0, 'nothing in localStorage');
    check(!page.url().includes(adminKey), 'the key is never in the URL');

    // Accounts: create one whose name is hostile markup; it shows as text.
    await page.waitForSelector('h2:text("Accounts")');
    await page.fill('form.inline >> nth=1 >> input >> nth=0', XSS);
    await page.fill('form.inline >> nth=1 >> input >> nth=1', '40');
    await page.click('button:text("Create account")');
    await page.waitForSelector('.secret-value');
    const row = await page.waitForSelector(`tr[data-account] >> text=${XSS}`);
    check((await row.textContent()).includes(XSS), 'the name shows as text');
    check(await page.$('tbody img') === null, 'no element was made from the name');
    const accountId = await row.evaluate((r) => r.closest('tr').dataset.account);
    // Search finds it.
    await page.fill('input[type=search]', accountId);
    await page.click('button:text("Search")');
    await until(async () => (await page.$$('tr[data-account]')).length === 1, 5000, 'the search');
    await page.click(`tr[data-account="${accountId}"] a`);

    // The account: grant, limits, a new key, disable.
    await page.waitForSelector('h3:text("Keys")');
    await page.fill('input[placeholder="25 or -5"]', '2.5');
    await page.click('button:text("Grant")');
    await until(() => page.evaluate(() => document.body.textContent.includes('42.5 credits')), 5000, 'the grant');
    await page.click('tr[data-key] button:text("Limits")');
    await page.fill('form.limits input[aria-label="rpm"]', '5');
    await page.fill('form.limits input[aria-label="budget credits"]', '10');
    await page.selectOption('form.limits select', 'day');
    await page.click('form.limits button:text("Save limits")');
    await until(() => page.evaluate(() => [...document.querySelectorAll('tr[data-key]')].some((r) => r.textContent.includes('per day'))), 5000, 'the limits');
    await page.fill('input[placeholder="ci"]', 'second');
    await page.click('button:text("New key")');
    await page.waitForSelector('.secret-value');
    check((await page.$$('tr[data-key]')).length === 2, 'two keys');
    await page.click('#toggleAccount');
    await until(() => page.evaluate(() => document.body.textContent.includes('disabled')), 5000, 'the disable');
    check((await page.textContent('#toggleAccount')).includes('Enable'), 'enable offered');

    // Tasks: filter, then a task's attempts and callbacks; the prompt is text.
    await page.click('nav a[data-page="tasks"]');
    await page.waitForSelector('#taskFilters');
    await page.selectOption('#fStatus', 'failed');
    await page.click('#taskFilters button');
    await until(() => page.evaluate(() => location.hash === '#/tasks?status=failed'), 5000, 'the filter route');
    await page.waitForSelector(`tr[data-task="${failed.id}"]`);
    check(await page.$(`tr[data-task="${done.id}"]`) === null, 'the filter keeps completed tasks out');
    check((await page.textContent(`tr[data-task="${failed.id}"] td.prompt`)) === XSS, 'the prompt shows as text');
    await page.click(`tr[data-task="${failed.id}"] a`);
    await page.waitForSelector('h3:text("Upstream attempts")');
    await page.waitForSelector('h3:text("Callback deliveries")');
    check((await page.textContent('.task-error')).includes('request_cancelled'), 'the task error');

    // Providers, margin (with its chart), codes, audit.
    await page.click('nav a[data-page="providers"]');
    await page.waitForSelector('h2:text("Providers")');
    await page.click('nav a[data-page="margin"]');
    await page.waitForSelector('#marginChart rect.rev');
    await page.click('nav a[data-page="codes"]');
    await page.waitForSelector('h2:text("Top-up codes")');
    await page.fill('input[placeholder="50"]', '5');
    await page.fill('input[type=number] >> nth=0', '2');
    await page.click('button:text("Make codes")');
    await page.waitForSelector('#newCodes');
    const codes = (await page.inputValue('#newCodes')).split('\n');
    check(codes.length === 2 && codes.every((c) => /^VG-[A-Z0-9]{4}(-[A-Z0-9]{4}){3}$/.test(c)), `codes: ${codes}`);
    await page.waitForSelector('tr[data-batch]');
    await page.click('nav a[data-page="audit"]');
    for (const action of ['account.create', 'account.grant', 'key.limits', 'key.create', 'account.disable', 'codes.create']) {
      await page.waitForSelector(`tr[data-action="${action}"]`);
    }
    // A reload stays on the page and signed in (the key lives as long as the tab).
    await page.reload();
    await page.waitForSelector('tr[data-action="account.grant"]');
    check(page.url().endsWith('#/audit'), 'the route survives a reload');

    check(await page.evaluate(() => window.__owned === undefined), 'a client string ran as code');
    check(csp.length === 0, 'CSP violations: ' + csp.join('; '));
    page.assertClean();
    await page.screenshot({ path: path.join(out, 'console.png'), fullPage: true });
    console.log('console: 1 passed, 0 failed');
  } finally {
    await browser.close();
  }
})().catch((e) => { console.error('console browser test failed:', e.message); process.exit(1); });
