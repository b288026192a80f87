// The console in Debian's chromium (issue 23), driven by playwright-core,
// against the servers t/browser/run.pl started: every flow as a person
// does it, and its effect checked outside the browser (the gateway, the
// webhook receiver).  Run by `make test-browser`.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync, writeFileSync, rmSync } from 'node:fs';
import { chromium } from 'playwright-core';
import { createHmac } from 'node:crypto';

const CONSOLE = process.env.CONSOLE_URL;
const GATEWAY = process.env.GATEWAY_URL;
const RECEIVER_DIR = process.env.RECEIVER_DIR;
const RECEIVER_URL = process.env.RECEIVER_URL;
const SHOTS = process.env.SCREENSHOTS;
const CSP = "default-src 'self'; script-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'";
const XSS_NAME = '<img src=x onerror="window.__xss=1">';

let browser;
const problems = [];       // page errors, CSP violations, dialogs: none expected

async function open(user, viewport) {
  const context = await browser.newContext({
    viewport: viewport || { width: 1280, height: 900 },
    extraHTTPHeaders: { 'X-Forwarded-User': user },   // the front proxy's part
  });
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: CONSOLE });
  const page = await context.newPage();
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
  page.on('dialog', async (d) => { problems.push(`dialog: ${d.message()}`); await d.dismiss(); });
  page.on('console', (m) => {
    if (/Content Security Policy|Refused to/i.test(m.text())) problems.push(`console: ${m.text()}`);
  });
  return page;
}

async function noXss(page, where) {
  const ran = await page.evaluate(() => window.__xss);
  assert.equal(ran, undefined, `${where}: no planted script ran`);
  assert.equal(await page.locator('img[src="x"], script:not([src])').count(), 0, `${where}: no planted element`);
}

async function gateway(token) {
  const r = await fetch(GATEWAY, { headers: { Authorization: `Bearer ${token}` } });
  return r.status;
}

function shot(page, name) {
  return page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true });
}

async function until(what, fn, ms = 15000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

// a token shown once: read from its field, copied with the button, closed
async function takeToken(page) {
  const dlg = page.getByRole('dialog');
  await dlg.getByText('Copy the token now: it will not be shown again.').waitFor();
  const token = await dlg.getByLabel('The token').inputValue();
  assert.match(token, /^sat_[A-Za-z0-9]{16}_/, 'a token in the field');
  await dlg.getByRole('button', { name: 'Copy' }).click();
  await dlg.getByText('Copied.').waitFor();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), token, 'Copy puts it on the clipboard');
  return { dlg, token };
}

async function closeToken(page, dlg, token) {
  await dlg.getByRole('button', { name: 'Done' }).click();
  await dlg.waitFor({ state: 'detached' });
  await page.getByRole('heading', { name: /^Service account/ }).waitFor();
  const kept = await page.evaluate((t) => document.documentElement.outerHTML.includes(t)
    || [...document.querySelectorAll('input')].some((i) => i.value.includes(t))
    || JSON.stringify(localStorage).includes(t) || JSON.stringify(sessionStorage).includes(t)
    || location.href.includes(t), token);
  assert.equal(kept, false, 'the token is in no page, storage or URL once closed');
}

before(async () => {
  // Debian's chromium; no background connections (the network is closed)
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  await browser?.close();
});

let page;
let account;          // the service account's id
let token;
let webhookSecret;    // shown once by the notifications test
let kbToken;          // issued with the keyboard alone
const SaTid = (t) => t.slice(4, 20);

test('every page of the console carries the strict CSP, nosniff, no-referrer', async () => {
  for (const p of ['/', '/app.js', '/api.js', '/dom.js', '/style.css']) {
    const r = await fetch(CONSOLE + p, { headers: { 'X-Forwarded-User': 'alice' } });
    assert.equal(r.status, 200, p);
    assert.equal(r.headers.get('content-security-policy'), CSP, `${p}: CSP`);
    assert.equal(r.headers.get('x-content-type-options'), 'nosniff', `${p}: nosniff`);
    assert.equal(r.headers.get('referrer-policy'), 'no-referrer', `${p}: no-referrer`);
  }
  assert.equal((await fetch(GATEWAY)).status, 401, 'the gateway: no token, 401');
  const html = await (await fetch(`${CONSOLE}/`)).text();
  assert.doesNotMatch(html, /<script(?![^>]*\bsrc=)|\sstyle=|\son[a-z]+=/i, 'no inline script, style or handler');
});

test('teams: who I am and my teams, from /v1/me', async () => {
  page = await open('alice');
  await page.goto(`${CONSOLE}/`);
  await page.getByText('Signed in as alice').waitFor();
  await page.getByRole('link', { name: 'platform', exact: true }).waitFor();
  await shot(page, 'teams');
});

test('team: empty state, + Service account, an error next to its cause, planted markup shown as text', async () => {
  await page.getByRole('link', { name: 'platform', exact: true }).click();
  await page.getByRole('heading', { name: 'Team platform' }).waitFor();
  await page.getByText('No service accounts yet: + Service account').waitFor();

  await page.getByRole('button', { name: '+ Service account' }).click();
  const dlg = page.getByRole('dialog');
  await dlg.getByLabel('Name').fill(XSS_NAME);
  await dlg.getByRole('button', { name: 'Create' }).click();
  const err = dlg.locator('.error:not([hidden])').first();
  await err.waitFor();
  assert.match(await err.textContent(), /invalid account name '<img src=x onerror="window.__xss=1">'/,
    "the API's refusal, next to the name, as text");
  await noXss(page, 'a refused name');

  await dlg.getByLabel('Name').fill('deployer');
  await dlg.getByLabel('stacks', { exact: true }).check();
  await dlg.getByLabel('service_accounts:tokens', { exact: true }).check();
  await dlg.getByRole('button', { name: 'Create' }).click();
  await dlg.waitFor({ state: 'detached' });
  const row = page.locator('tr', { hasText: 'deployer' });
  await row.getByText('service_accounts:tokens').waitFor();
  await row.getByText('stacks').waitFor();
  await shot(page, 'team');
});

test('keyboard alone: Tab to + Service account, Enter opens it, Escape closes it', async () => {
  await page.locator('body').click({ position: { x: 1, y: 1 } });
  let found = false;
  for (let i = 0; i < 40 && !found; i += 1) {
    await page.keyboard.press('Tab');
    found = await page.evaluate(() => document.activeElement?.textContent === '+ Service account');
  }
  assert.ok(found, 'reached with Tab');
  await page.keyboard.press('Enter');
  const dlg = page.getByRole('dialog');
  await dlg.waitFor();
  assert.equal(await page.evaluate(() => document.activeElement?.labels?.[0]?.textContent), 'Name',
    'the first field has the focus and a label');
  await page.keyboard.press('Escape');
  await dlg.waitFor({ state: 'detached' });
});

test('access tokens: New token with scope boxes, shown once, 200 at the gateway', async () => {
  await page.getByRole('link', { name: 'deployer' }).click();
  await page.getByRole('heading', { name: 'Service account deployer' }).waitFor();
  account = await page.locator('code').first().textContent();
  await page.getByText('No tokens yet: New token.').waitFor();

  await page.getByRole('button', { name: 'New token' }).click();
  const dlg = page.getByRole('dialog');
  await dlg.getByRole('group', { name: 'stacks' }).waitFor();
  await dlg.getByText('Read stacks <img src=x onerror="window.__xss=(window.__xss||0)+1">').waitFor();
  await dlg.getByText('Change stacks "><script>window.__xss=(window.__xss||0)+1</script>').waitFor();
  await noXss(page, 'scope descriptions');
  assert.equal(await dlg.getByLabel('invoices:read').count(), 0, "only the account's applications' scopes");
  await dlg.getByLabel('stacks:read', { exact: true }).check();
  await dlg.getByLabel('Expires').selectOption('30d');
  await shot(page, 'new-token');
  await dlg.getByRole('button', { name: 'Create token' }).click();

  const got = await takeToken(page);
  token = got.token;
  await shot(page, 'token-once');
  await closeToken(page, got.dlg, token);
  assert.equal(await gateway(token), 200, 'the copied token: 200 at the gateway');
  const row = page.locator('tr', { hasText: token.slice(4, 20) });
  await row.getByText('stacks:read').waitFor();
});

test('rotate: the new token works, the old one stops (no overlap)', async () => {
  const old = token;
  const row = page.locator('tr', { hasText: old.slice(4, 20) });
  await row.getByRole('button', { name: /^Rotate/ }).click();
  const dlg = page.getByRole('dialog');
  await dlg.getByLabel('Overlap').selectOption('0');
  await dlg.getByRole('button', { name: 'Rotate' }).click();
  const got = await takeToken(page);
  token = got.token;
  await closeToken(page, got.dlg, token);
  assert.equal(await gateway(token), 200, 'the new token: 200');
  assert.equal(await gateway(old), 401, 'the old one: 401');
});

test('edit scopes: untick, Save changes, the next request is 403', async () => {
  const row = page.locator('tr', { hasText: token.slice(4, 20) });
  await row.getByRole('button', { name: /^Edit/ }).click();
  const dlg = page.getByRole('dialog');
  const box = dlg.getByLabel('stacks:read', { exact: true });
  assert.ok(await box.isChecked(), 'the boxes show the scopes it holds');
  await box.uncheck();
  await dlg.getByLabel('stacks:write', { exact: true }).check();
  await dlg.getByRole('button', { name: 'Save changes' }).click();
  await dlg.waitFor({ state: 'detached' });
  await page.locator('tr', { hasText: token.slice(4, 20) }).getByText('stacks:write').waitFor();
  assert.equal(await gateway(token), 403, 'stacks:read unticked: 403 at the gateway');
  await shot(page, 'tokens');
});

test('revoke, with a confirmation: 401 at the gateway', async () => {
  const row = page.locator('tr', { hasText: token.slice(4, 20) });
  await row.getByRole('button', { name: /^Revoke/ }).click();
  const dlg = page.getByRole('dialog');
  await dlg.getByText('It stops working at every gateway at once.').waitFor();
  await dlg.getByRole('button', { name: 'Revoke' }).click();
  await dlg.waitFor({ state: 'detached' });
  await page.locator('tr', { hasText: token.slice(4, 20) }).getByText('revoked').waitFor();
  assert.equal(await gateway(token), 401, 'revoked: 401');
});

// issue 23, items 2 and 8: the token flow with the keyboard alone, and
// what the tokens table and a slow call show
async function tabTo(page, test, back = false, max = 40) {
  for (let i = 0; i < max; i += 1) {
    if (await page.evaluate(test)) return true;
    await page.keyboard.press(back ? 'Shift+Tab' : 'Tab');
  }
  return page.evaluate(test);
}

test('access tokens with the keyboard alone: New token, a scope box, Create token, Copy, Done', async () => {
  await page.goto(`${CONSOLE}/#/accounts/${account}`);
  await page.getByRole('heading', { name: 'Service account deployer' }).waitFor();
  await page.locator('body').click({ position: { x: 1, y: 1 } });
  assert.ok(await tabTo(page, () => document.activeElement?.textContent === 'New token'), 'Tab reaches New token');
  await page.keyboard.press('Enter');
  const dlg = page.getByRole('dialog');
  await dlg.waitFor();
  assert.ok(await tabTo(page, () => document.activeElement?.dataset?.scope === 'stacks:read', true),
    'Shift+Tab reaches the stacks:read box');
  await page.keyboard.press('Space');
  assert.ok(await dlg.getByLabel('stacks:read', { exact: true }).isChecked(), 'Space ticks it');
  assert.ok(await tabTo(page, () => document.activeElement?.textContent === 'Create token'), 'Tab reaches Create token');
  await page.keyboard.press('Enter');
  await dlg.getByText('Copy the token now: it will not be shown again.').waitFor();
  assert.equal(await page.evaluate(() => document.activeElement?.textContent), 'Copy', 'Copy has the focus');
  const t = await dlg.getByLabel('The token').inputValue();
  await page.keyboard.press('Enter');
  await dlg.getByText('Copied.').waitFor();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), t, 'copied with Enter');
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement?.textContent), 'Done', 'then Done');
  await page.keyboard.press('Enter');
  await dlg.waitFor({ state: 'detached' });
  assert.equal(await gateway(t), 200, 'the token issued with the keyboard: 200 at the gateway');
  kbToken = t;
});

test('access tokens: expiring soon highlighted, last use shown, progress while a slow call runs', async () => {
  const soon = await page.evaluate(async (id) => (await fetch(`/v1/accounts/${id}/tokens`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ scopes: ['stacks:read'], expires: '7d' }),
  })).json(), account);
  assert.equal(await gateway(soon.token), 200, 'a token of 7 days: 200');
  await until('its last use in the table', async () => {
    await page.goto('about:blank');
    await page.goto(`${CONSOLE}/#/accounts/${account}`);
    const row = page.locator('tr', { hasText: soon.id });
    await row.waitFor();
    return (await row.locator('td').nth(5).textContent()) !== '—';
  });
  const row = page.locator('tr', { hasText: soon.id });
  assert.match(await row.getAttribute('class'), /\bsoon\b/, 'expiring within 14 days: the row highlighted');
  await row.getByText('expiring soon').waitFor();
  assert.match(await row.locator('td').nth(5).textContent(), /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$/, 'last used: a time');
  const other = page.locator('tr', { hasText: SaTid(kbToken) });
  assert.doesNotMatch((await other.getAttribute('class')) || '', /\bsoon\b/, 'a token of 90 days: not highlighted');
  assert.equal(await other.getByText('expiring soon').count(), 0, 'nor marked');
  await shot(page, 'tokens-soon');

  // a slow write: the button says what it does and is busy until the answer
  await page.route('**/v1/tokens/*/rotate', async (r) => { await new Promise((ok) => setTimeout(ok, 800)); await r.continue(); });
  await row.getByRole('button', { name: /^Rotate/ }).click();
  const dlg = page.getByRole('dialog');
  await dlg.getByLabel('Overlap').selectOption('1h');
  await dlg.getByRole('button', { name: 'Rotate' }).click();
  const busy = dlg.getByRole('button', { name: 'Rotating…' });
  await busy.waitFor();
  assert.equal(await busy.getAttribute('aria-busy'), 'true', 'aria-busy while it runs');
  assert.ok(await busy.isDisabled(), 'and not pressed twice');
  const got = await takeToken(page);
  await page.unroute('**/v1/tokens/*/rotate');
  await closeToken(page, got.dlg, got.token);
  assert.equal(await gateway(got.token), 200, 'the rotated token: 200');
  assert.equal(await gateway(soon.token), 200, 'and the old one for the hour of overlap');
});

test('notifications: Switch user, webhook per event, secret once, Send test reaches the receiver', async () => {
  await page.getByRole('link', { name: 'Applications' }).click();
  await page.getByRole('link', { name: 'stacks', exact: true }).click();
  await page.getByRole('heading', { name: 'Application stacks' }).waitFor();
  await page.getByText('Read stacks <img src=x').waitFor();
  await noXss(page, 'the catalogue table');

  const pick = page.getByLabel('Switch user');
  const options = await pick.locator('option').allTextContents();
  assert.deepEqual(options.slice(1), ['platform/deployer'], 'only the accounts granted the application');
  await pick.selectOption({ label: 'platform/deployer' });
  await page.getByText('No notifications yet.').waitFor();

  await page.getByLabel('Webhook', { exact: true }).check();
  await page.getByLabel('Webhook URL').fill(RECEIVER_URL);
  await page.getByLabel('token.issued by webhook').check();
  await page.getByLabel('token.revoked by webhook').check();
  await page.getByLabel('token.revoked by Slack').check();
  await page.getByRole('button', { name: 'Save' }).click();
  const slackErr = page.locator('.card .error:not([hidden])');
  await slackErr.getByText('Events are ticked for Slack: turn Slack on').waitFor();   // next to its cause
  await page.getByLabel('token.revoked by Slack').uncheck();
  await page.getByRole('button', { name: 'Save' }).click();
  const dlg = page.getByRole('dialog', { name: 'Webhook signing secret' });
  await dlg.getByText('it will not be shown again').waitFor();
  webhookSecret = await dlg.getByLabel('The token').inputValue();
  assert.ok(webhookSecret.length >= 16, 'the webhook secret, once');
  await dlg.getByRole('button', { name: 'Done' }).click();
  await dlg.waitFor({ state: 'detached' });

  await page.getByText(/^Subscribed since/).waitFor();
  assert.ok(await page.getByLabel('token.issued by webhook').isChecked(), 'the events saved');
  assert.ok(!(await page.getByLabel('token.denied by webhook').isChecked()), 'and only those');
  assert.ok(!(await page.getByLabel('token.issued by Slack').isChecked()), 'nothing by Slack');
  const subs = await page.evaluate(async () => (await fetch('/v1/apps/stacks/notifications')).json());
  assert.deepEqual(subs[0].webhook_events, ['token.issued', 'token.revoked'], 'the webhook takes its own events');
  await page.getByText('No failed deliveries.').waitFor();
  await page.getByRole('button', { name: 'Send test' }).click();
  await page.getByText('Test queued: a ping is on its way.').waitFor();
  await shot(page, 'notifications');

  const raw = await until('the webhook test at the receiver', () => {
    if (!existsSync(`${RECEIVER_DIR}/count`)) return null;
    const n = Number(readFileSync(`${RECEIVER_DIR}/count`, 'utf8'));
    for (let i = 1; i <= n; i += 1) {
      const r = readFileSync(`${RECEIVER_DIR}/${i}.http`, 'utf8');
      if (r.includes('"ping"')) return r;
    }
    return null;
  });
  assert.match(raw, /^POST \/hook HTTP\/1\.1/, 'the test reached the webhook');
});

test('failed deliveries: a test that kept failing is listed, Retry delivers it', async () => {
  writeFileSync(`${RECEIVER_DIR}/plan`, '500\n'.repeat(20000));   // the receiver fails
  await page.getByRole('button', { name: 'Send test' }).click();
  await page.getByText('Test queued: a ping is on its way.').waitFor();
  const where = page.url();
  await until('the delivery listed as failed', async () => {
    await page.goto('about:blank');
    await page.goto(where);
    await page.getByRole('heading', { name: 'Failed deliveries' }).waitFor();
    return page.getByRole('button', { name: 'Retry' }).count();
  }, 30000);
  const row = page.locator('tr', { has: page.getByRole('button', { name: 'Retry' }) }).first();
  await row.getByText('ping').waitFor();
  await row.getByText('HTTP 500').waitFor();
  await shot(page, 'failed');
  rmSync(`${RECEIVER_DIR}/plan`, { force: true });                  // and recovers
  const before = Number(readFileSync(`${RECEIVER_DIR}/count`, 'utf8'));
  await row.getByRole('button', { name: 'Retry' }).click();
  await page.getByText('No failed deliveries.').waitFor();
  await until('the retried delivery at the receiver', () => {
    const n = Number(readFileSync(`${RECEIVER_DIR}/count`, 'utf8'));
    for (let i = n; i > before; i -= 1) {
      const r = readFileSync(`${RECEIVER_DIR}/${i}.http`, 'utf8');
      if (r.includes('"ping"')) return true;
    }
    return false;
  });
});

// a saved subscription's toggles change without its URLs typed again
// (issue 23, item 4): the URL shown masked, kept, the webhook secret too
test('notifications: toggles saved without typing the URL again; URL masked, secret kept', async () => {
  await page.goto(`${CONSOLE}/#/apps/stacks/${account}`);
  await page.getByText(/^Subscribed since/).waitFor();
  const url = page.getByLabel('Webhook URL');
  assert.equal(await url.inputValue(), '', 'the URL field is empty');
  const port = new URL(RECEIVER_URL).port;
  await page.getByText(`stored: http://127.0.0.1:${port}/... (kept when left empty)`).waitFor();
  assert.equal(await page.evaluate((u) => document.documentElement.outerHTML.includes(u), RECEIVER_URL), false,
    'the whole URL is nowhere in the page');

  await page.getByLabel('token.denied by webhook').check();
  await page.getByLabel('token.issued by webhook').uncheck();
  await page.getByRole('button', { name: 'Save' }).click();
  await page.waitForLoadState('networkidle');
  await page.getByText(/^Subscribed since/).waitFor();
  assert.equal(await page.getByRole('dialog').count(), 0, 'no new secret shown: the old one stays');
  assert.equal(await page.locator('.card .error:not([hidden])').count(), 0, 'no error');
  assert.ok(await page.getByLabel('token.denied by webhook').isChecked(), 'token.denied saved');
  assert.ok(!(await page.getByLabel('token.issued by webhook').isChecked()), 'token.issued off');
  const subs = await page.evaluate(async () => (await fetch('/v1/apps/stacks/notifications')).json());
  assert.deepEqual(subs[0].webhook_events, ['token.revoked', 'token.denied'], 'the API has the new events');

  // the kept URL and secret: a test reaches the receiver, signed with the first secret
  const before = Number(readFileSync(`${RECEIVER_DIR}/count`, 'utf8'));
  await page.getByRole('button', { name: 'Send test' }).click();
  await page.getByText('Test queued: a ping is on its way.').waitFor();
  const raw = await until('the test at the kept URL', () => {
    const n = Number(readFileSync(`${RECEIVER_DIR}/count`, 'utf8'));
    for (let i = n; i > before; i -= 1) {
      const r = readFileSync(`${RECEIVER_DIR}/${i}.http`, 'utf8');
      if (r.includes('"ping"')) return r;
    }
    return null;
  });
  const [head, body] = raw.split('\r\n\r\n');
  assert.match(head, /^POST \/hook HTTP\/1\.1/, 'at the kept URL, path included');
  const [, t, v1] = head.match(/^x-sa-signature:\s*t=(\d+),v1=([0-9a-f]{64})\r?$/im) || [];
  assert.equal(v1, createHmac('sha256', webhookSecret).update(`${t}.${body}`).digest('hex'),
    'signed with the secret shown the first time: kept');
});

// the audit page (issue 23, item 5): the API filters and pages; what the
// page shows is checked against the API's own answer
async function auditRows(page) {
  await page.waitForFunction(() => document.getElementById('main').dataset.shown === location.hash);
  await page.getByRole('heading', { name: 'Audit log of platform' }).waitFor();
  return page.locator('tbody tr').evaluateAll((trs) => trs.map((tr) => [...tr.cells].map((c) => c.textContent)));
}
async function auditApi(page, q) {
  return page.evaluate(async (qs) => (await fetch(`/v1/audit?${qs}`)).json(), q);
}

test('audit: newest first, filtered by account and actor on the server, paged with Older and Newer', async () => {
  // 30 more entries about deployer: more than a page of 25
  const issued = await page.evaluate(async (id) => (await fetch(`/v1/accounts/${id}/tokens`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ count: 30 }),
  })).status, account);
  assert.equal(issued, 201, '30 tokens issued');
  const full = await auditApi(page, `team=platform&account=${account}`);     // oldest first
  assert.ok(full.length > 25 && full.length <= 50, `${full.length} entries about deployer`);
  const [acct, toks] = await page.evaluate(async (id) => Promise.all([
    (await fetch(`/v1/accounts/${id}`)).json(), (await fetch(`/v1/accounts/${id}/tokens`)).json()]), account);
  const ids = new Set([account, acct.email, ...toks.map((t) => t.id)]);
  assert.deepEqual(full.filter((e) => !ids.has(e.target)), [], "the API's: deployer's, its tokens' and its membership's only");

  // a slow answer: progress shown until it comes
  await page.route('**/v1/audit?*', async (r) => { await new Promise((ok) => setTimeout(ok, 600)); await r.continue(); });
  await page.goto(`${CONSOLE}/#/teams/platform/audit`);
  await page.getByRole('status').getByText('Loading the audit log of platform…').waitFor();
  assert.equal(await page.locator('main').getAttribute('aria-busy'), 'true', 'the page says it is busy');
  let rows = await auditRows(page);
  await page.unroute('**/v1/audit?*');
  assert.equal(rows.length, 25, 'a page of 25');
  const times = rows.map((r) => r[0]);
  assert.deepEqual(times, [...times].sort().reverse(), 'newest first');
  assert.ok(await page.getByRole('button', { name: 'Newer' }).isDisabled(), 'nothing newer than the first page');

  // filter by account (a select of the team's accounts): the API's entries, newest first
  await page.getByLabel('Account').selectOption({ label: 'deployer' });
  await page.getByRole('button', { name: 'Filter' }).click();
  await page.waitForURL(/account=/);
  rows = await auditRows(page);
  const newest = full.slice().reverse();
  assert.equal(rows.length, 25, 'filtered: a page of 25');
  assert.deepEqual(rows.map((r) => r[2]), newest.slice(0, 25).map((e) => e.action), "the API's 25 newest about deployer");
  await shot(page, 'audit');

  // Older: the rest; meanwhile 3 more entries; Newer: page 1 as it was, then the 3 new ones
  await page.getByRole('button', { name: 'Older' }).click();
  await page.waitForURL(/before=/);
  rows = await auditRows(page);
  assert.deepEqual(rows.map((r) => r[2]), newest.slice(25).map((e) => e.action), 'Older: the rest, in order');
  assert.equal(rows.length, full.length - 25, 'no entry twice, none missed');
  assert.ok(rows.some((r) => r[2] === 'account.create' && r[3] === `deployer (${account})`),
    'an account shown by its name and id');
  assert.ok(await page.getByRole('button', { name: 'Older' }).isDisabled(), 'nothing older');
  await page.evaluate(async (id) => fetch(`/v1/accounts/${id}/tokens`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ count: 3 }),
  }), account);
  await page.getByRole('button', { name: 'Newer' }).click();
  await page.waitForURL(/after=/);
  rows = await auditRows(page);
  assert.deepEqual(rows.map((r) => r[2]), newest.slice(0, 25).map((e) => e.action),
    'Newer: the first page as it was, though 3 entries came meanwhile');
  const top = await auditApi(page, `team=platform&account=${account}&order=newest&limit=3`);
  await page.getByRole('button', { name: 'Newer' }).click();
  await page.getByText('3 entries').waitFor();
  rows = await auditRows(page);
  assert.deepEqual(rows.map((r) => r[0]), top.map((e) => e.time.replace('T', ' ').replace('Z', ' UTC')), 'then the 3 new ones');
  assert.ok(await page.getByRole('button', { name: 'Newer' }).isDisabled(), 'the newest now');

  // by actor, both filters, none matching, a refused value next to the filter
  await page.getByLabel('Actor').fill('alice');
  await page.getByRole('button', { name: 'Filter' }).click();
  await page.waitForURL(/actor=alice/);
  rows = await auditRows(page);
  assert.ok(rows.length > 0 && rows.every((r) => r[1] === 'alice'), 'only alice, about deployer');
  await page.getByLabel('Account').selectOption({ label: 'All accounts' });
  await page.getByLabel('Actor').fill('nobody');
  await page.getByRole('button', { name: 'Filter' }).click();
  await page.getByText('No entry matches.').waitFor();
  await page.goto(`${CONSOLE}/#/teams/platform/audit?account=platform%2Fnosuch`);
  const err = page.locator('main .error:not([hidden])');
  await err.waitFor();
  assert.match(await err.textContent(), /no account 'platform\/nosuch'/, "the API's refusal, next to the filter");
});

test('audit with the keyboard alone: pick the account, Filter, Older', async () => {
  await page.goto(`${CONSOLE}/#/teams/platform/audit`);
  await auditRows(page);
  await page.getByLabel('Account').focus();
  await page.keyboard.press('ArrowDown');               // "deployer", the first account
  assert.equal(await page.getByLabel('Account').inputValue(), account, 'chosen with the arrow key');
  await page.keyboard.press('Tab');                     // Actor
  await page.keyboard.press('Tab');                     // Filter
  assert.equal(await page.evaluate(() => document.activeElement?.textContent), 'Filter', 'Tab reaches Filter');
  await page.keyboard.press('Enter');
  await page.waitForURL(/account=/);
  await auditRows(page);
  let found = false;
  for (let i = 0; i < 40 && !found; i += 1) {
    await page.keyboard.press('Tab');
    found = await page.evaluate(() => document.activeElement?.textContent === 'Older');
  }
  assert.ok(found, 'Older reached with Tab');
  await page.keyboard.press('Enter');
  await page.waitForURL(/before=/);
  assert.ok((await auditRows(page)).length > 0, 'the older page');
});

test('readable at 375 px and at 1920 px', async () => {
  for (const [w, hgt] of [[375, 800], [1920, 1080]]) {
    await page.setViewportSize({ width: w, height: hgt });
    await page.goto(`${CONSOLE}/#/teams/platform`);
    await page.getByRole('heading', { name: 'Team platform' }).waitFor();
    const width = await page.evaluate(() => document.documentElement.scrollWidth);
    const wide = await page.evaluate((max) => [...document.querySelectorAll('body *')]
      .filter((e) => e.getBoundingClientRect().right > max + 1)
      .map((e) => `${e.tagName}.${e.className}:${Math.round(e.getBoundingClientRect().right)}`).slice(0, 8), w);
    assert.ok(width <= w, `no sideways scrolling at ${w} px (${width}; ${wide.join(' ')})`);
    await shot(page, `team-${w}`);
  }
});

// issue 23, item 8: every page at 375 px and at 1920 px, and a label on
// every control of every page and dialog
async function unlabelled(page) {
  return page.evaluate(() => [...document.querySelectorAll('input, select, textarea, button')]
    .filter((e) => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
      && !e.getAttribute('aria-labelledby') && !(e.tagName === 'BUTTON' && e.textContent.trim()))
    .map((e) => `${e.tagName}#${e.id}`));
}

test('every page readable at 375 px and 1920 px, every control labelled', async () => {
  const pages = [
    ['teams', '/#/', 'Teams'],
    ['account', `/#/accounts/${account}`, 'Service account deployer'],
    ['apps', '/#/apps', 'Applications'],
    ['app', `/#/apps/stacks/${account}`, 'Application stacks'],
    ['audit', '/#/teams/platform/audit', 'Audit log of platform'],
  ];
  for (const [w, hgt] of [[375, 800], [1920, 1080]]) {
    await page.setViewportSize({ width: w, height: hgt });
    for (const [name, path, heading] of pages) {
      await page.goto(`${CONSOLE}${path}`);
      await page.getByRole('heading', { name: heading, exact: true }).waitFor();
      await page.waitForFunction(() => document.getElementById('main').dataset.shown === location.hash);
      const width = await page.evaluate(() => document.documentElement.scrollWidth);
      assert.ok(width <= w, `${name}: no sideways scrolling at ${w} px (${width})`);
      const cut = await page.evaluate(() => [...document.querySelectorAll('.scroll')]
        .filter((e) => e.scrollWidth > e.clientWidth + 1).map((e) => `${e.scrollWidth}>${e.clientWidth}`));
      assert.deepEqual(cut, [], `${name}: no table wider than the screen at ${w} px`);
      assert.deepEqual(await unlabelled(page), [], `${name}: every control has a label`);
      await shot(page, `${name}-${w}`);
    }
  }
  await page.setViewportSize({ width: 1280, height: 900 });
  await page.goto(`${CONSOLE}/#/accounts/${account}`);
  await page.getByRole('button', { name: 'New token' }).click();
  await page.getByRole('dialog').waitFor();
  assert.deepEqual(await unlabelled(page), [], 'New token: every control has a label');
  await page.keyboard.press('Escape');
  await page.goto(`${CONSOLE}/#/teams/platform`);
  await page.getByRole('button', { name: '+ Service account' }).click();
  await page.getByRole('dialog').waitFor();
  assert.deepEqual(await unlabelled(page), [], '+ Service account: every control has a label');
  await page.keyboard.press('Escape');
});

test('a member without permissions: nothing offered, and the API refuses anyway', async () => {
  const bob = await open('bob');
  await bob.goto(`${CONSOLE}/#/teams/platform`);
  await bob.getByRole('heading', { name: 'Team platform' }).waitFor();
  await bob.getByText('deployer').waitFor();
  assert.equal(await bob.getByRole('button', { name: '+ Service account' }).count(), 0, 'no + Service account');
  assert.equal(await bob.getByRole('button', { name: /^Delete/ }).count(), 0, 'no Delete');
  const status = await bob.evaluate(async () => (await fetch('/v1/teams/platform/accounts', {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"name":"sneaky"}',
  })).status);
  assert.equal(status, 403, 'the API refuses it');
  await bob.context().close();
});

test('delete a service account: the confirmation names what goes', async () => {
  await page.goto(`${CONSOLE}/#/teams/platform`);
  await page.getByRole('heading', { name: 'Team platform' }).waitFor();
  await page.getByRole('button', { name: 'Delete deployer' }).click();
  const dlg = page.getByRole('dialog', { name: 'Delete deployer?' });
  await dlg.getByText('with every token it holds (revoked at once) and its notifications').waitFor();
  await dlg.getByRole('button', { name: 'Delete' }).click();
  await dlg.waitFor({ state: 'detached' });
  await page.getByText('No service accounts yet: + Service account').waitFor();
  const r = await page.evaluate(async (id) => (await fetch(`/v1/accounts/${id}`)).status, account);
  assert.equal(r, 404, 'gone from the API');
});

test('markup in names never gets in: refused by the API, and shown as text', async () => {
  const bad = await page.evaluate(async (x) => {
    const put = (p) => fetch(p, { method: 'PUT', headers: { 'Content-Type': 'application/json' }, body: '{}' });
    return [
      (await put(`/v1/apps/stacks/scopes/${encodeURIComponent(x)}`)).status,
      (await put(`/v1/apps/${encodeURIComponent(x)}/scopes/a:b`)).status,
      (await put(`/v1/teams/platform/members/${encodeURIComponent('"><script>x</script>')}`)).status,
      (await fetch('/v1/teams', { method: 'POST', headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ team: x, owner: 'alice' }) })).status,
    ];
  }, XSS_NAME);
  assert.deepEqual(bad, [400, 400, 400, 400], 'scope, application, user and team names refused');
  await page.goto(`${CONSOLE}/#/teams/${encodeURIComponent(XSS_NAME)}`);
  await page.getByRole('heading', { name: 'Something went wrong' }).waitFor();
  await noXss(page, 'a team name in the URL');
  assert.deepEqual(problems, [], 'no page error, CSP violation or dialog in any page');
});
