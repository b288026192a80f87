// The console's attack review in the browser (issue 23, item 7): run by
// t/browser/run.pl after console.test.mjs, against the same servers.  Data
// planted in Redis by a writer without the signing key (dead letters, a
// token's last use, an unsigned account, audit entries) with markup,
// direction controls, control bytes and 10 kB texts; pages of another
// origin (same site and cross site) that post forms and fetch the API with
// the visitor's session, and frame the console; malformed and hostile
// hashes; the token shown once, closed with Escape.  The server's side is
// t/api/41-console-attacks.t.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createServer } from 'node:http';
import { chromium } from 'playwright-core';

const CONSOLE = process.env.CONSOLE_URL;
const REDIS = process.env.REDIS_URL;
// the attacker's pages come from a server of this test on another port:
// as http://127.0.0.1:PORT another origin of the same site, as
// http://localhost:PORT another site (both loopback, as the console is, so
// that the browser's local network checks do not stop them first)
let evilServer;
let SAME_SITE;
let CROSS_SITE;

const MARK = 'window.__xss=(window.__xss||0)+1';
const HOSTILE = [
  `<img src=x onerror="${MARK}">`,
  `"><script>${MARK}</script>`,
  `'><svg onload="${MARK}">`,
  `javascript:${MARK}`,
  '\u202Egnp.exe\u202C',
  'bell\u0007 esc\u001b[31m nul\u0000 del\u007f',
].join(' ');
const LONG = 'W'.repeat(10240);
const HOSTILE_ARG = HOSTILE.replace('\u0000', '');   // an argument holds no NUL

let browser;
const problems = [];
const logged = [];

function redis(...args) {
  return execFileSync('redis-cli', ['-u', REDIS, ...args], { encoding: 'utf8' }).trim();
}

async function open(user, viewport) {
  const context = await browser.newContext({
    viewport: viewport || { width: 1280, height: 900 },
    extraHTTPHeaders: { 'X-Forwarded-User': user },   // the proxy's session
  });
  const page = await context.newPage();
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
  page.on('dialog', async (d) => { problems.push(`dialog: ${d.message()}`); await d.dismiss(); });
  page.on('console', (m) => logged.push(m.text()));
  return page;
}

async function noXss(page, where) {
  for (const f of page.frames()) {
    assert.equal(await f.evaluate(() => window.__xss).catch(() => undefined), undefined,
      `${where}: no planted script ran`);
  }
  assert.equal(await page.locator('img[src="x"], svg, script:not([src]), a[href^="javascript:" i]').count(), 0,
    `${where}: no planted element`);
}

async function api(page, method, path, body) {
  return page.evaluate(async ([m, p, b]) => {
    const r = await fetch(p, { method: m, headers: { 'Content-Type': 'application/json' },
      body: b === undefined ? undefined : JSON.stringify(b) });
    return { status: r.status, json: await r.json().catch(() => null) };
  }, [method, path, body]);
}

async function metric(re) {
  const text = await (await fetch(`${CONSOLE}/metrics`)).text();
  return text.split('\n').filter((l) => re.test(l))
    .reduce((n, l) => n + Number(l.split(' ').pop()), 0);
}

before(async () => {
  evilServer = createServer((req, res) => {
    const name = new URL(req.url, 'http://x').searchParams.get('name') || 'csrf';
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end(attackerPage(name));
  });
  await new Promise((r) => evilServer.listen(0, '127.0.0.1', r));
  SAME_SITE = `http://127.0.0.1:${evilServer.address().port}`;
  CROSS_SITE = `http://localhost:${evilServer.address().port}`;
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  await browser?.close();
  evilServer?.close();
});

let page;
let account;
let tid;

test('setup: an account of team platform granted billing, a token of it', async () => {
  page = await open('alice');
  await page.goto(`${CONSOLE}/`);
  await page.getByText('Signed in as alice').waitFor();
  const a = await api(page, 'POST', '/v1/teams/platform/accounts', { name: 'target', apps: ['billing'] });
  assert.equal(a.status, 201, 'account created');
  account = a.json.id;
  const t = await api(page, 'POST', `/v1/accounts/${account}/tokens`, { scopes: ['invoices:read'] });
  assert.equal(t.status, 201, 'token issued');
  tid = t.json.id;
});

test('planted in Redis without the key: shown as text, or not at all', async () => {
  // a dead letter (unsigned: a hint for the operator) of every field hostile
  redis('HSET', 'sa:delivery:failed', 'planted-1', JSON.stringify({
    type: `token.issued ${HOSTILE_ARG}`, app: 'billing', account: HOSTILE_ARG, team: 'platform',
    where: `https://evil.test/${HOSTILE_ARG}`, attempts: HOSTILE_ARG, error: `${HOSTILE_ARG} ${LONG}`,
    failed_at: 1764190000, dest: 'webhook',
  }));
  // one with a NUL, which the API's JSON parser refuses: skipped, no error
  redis('HSET', 'sa:delivery:failed', 'planted-2', JSON.stringify({
    type: 'token.issued', app: 'billing', account: 'nul\u0000', team: 'platform', failed_at: 1764190001,
  }));
  // a token's last use (unsigned information) that is no time
  redis('SET', `sa:tok:${tid}:used`, HOSTILE_ARG);
  // an account record that is not signed, listed in the team's index
  redis('SET', 'sa:acct:PlantedAcct00001', JSON.stringify({
    kind: 'account', id: 'PlantedAcct00001', team: 'platform', name: 'planted', apps: ['*'],
  }));
  redis('SADD', 'sa:team:platform:accounts', 'PlantedAcct00001');
  redis('HSET', 'sa:team:platform:names', 'planted', 'PlantedAcct00001');
  // an audit entry written straight into the stream
  redis('XADD', 'sa:audit', '*', 'time', '1764190000', 'actor', HOSTILE_ARG, 'action', HOSTILE_ARG,
    'target', `${HOSTILE_ARG} ${LONG}`, 'team', 'platform', 'proof', HOSTILE_ARG, 'channel', HOSTILE_ARG);

  await page.goto(`${CONSOLE}/#/apps/billing`);
  await page.getByRole('heading', { name: 'Failed deliveries' }).waitFor();
  const row = page.locator('tr', { hasText: 'WWWW' });
  await row.waitFor();
  assert.ok((await row.textContent()).includes('<img src=x onerror='), 'the dead letter, as text');
  await noXss(page, 'a planted dead letter');
  for (const w of [375, 1280]) {
    await page.setViewportSize({ width: w, height: 800 });
    const width = await page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= w, `10 kB of text: no sideways scrolling of the page at ${w} px (${width})`);
  }
  await page.setViewportSize({ width: 1280, height: 900 });

  await page.goto(`${CONSOLE}/#/accounts/${account}`);
  await page.getByRole('heading', { name: 'Service account target' }).waitFor();
  await page.locator('tr', { hasText: tid }).waitFor();
  assert.equal(await page.locator('tr', { hasText: tid }).locator('td').nth(5).textContent(), '—',
    'a last use that is no time: none shown');
  await noXss(page, 'a planted last use');

  await page.goto(`${CONSOLE}/#/teams/platform`);
  await page.getByRole('heading', { name: 'Team platform' }).waitFor();
  await page.locator('tr', { hasText: 'target' }).waitFor();
  assert.equal(await page.locator('tr', { hasText: 'planted' }).count(), 0,
    'an unsigned account in the index is not listed');
  assert.equal((await api(page, 'GET', '/v1/accounts/PlantedAcct00001')).status >= 400, true,
    'nor shown by the API');

  await page.goto(`${CONSOLE}/#/teams/platform/audit`);
  await page.getByRole('heading', { name: 'Audit log of platform' }).waitFor();
  await page.locator('tbody tr').first().waitFor();
  await noXss(page, 'a planted audit entry');
  redis('HDEL', 'sa:delivery:failed', 'planted-1', 'planted-2');
  redis('DEL', `sa:tok:${tid}:used`);
});

test('hostile and malformed hashes: a page, never a script or a hang', async () => {
  for (const hash of [
    `#/teams/${encodeURIComponent(HOSTILE)}`,
    `#/accounts/${encodeURIComponent('"><svg onload=alert(1)>')}`,
    `#/apps/${encodeURIComponent('javascript:alert(1)')}`,
    `#/apps/billing/${encodeURIComponent('<img src=x onerror=alert(1)>')}`,
    `#/teams/platform/audit?account=${encodeURIComponent(HOSTILE)}&actor=${encodeURIComponent(HOSTILE)}&page=-1`,
    '#/teams/%E0%A4%A',
    '#/teams/%',
    `#/teams/${'a'.repeat(10240)}`,
  ]) {
    await page.goto('about:blank');
    await page.goto(`${CONSOLE}/${hash}`);
    await page.locator('h1').first().waitFor({ timeout: 10000 });
    assert.notEqual(await page.locator('h1').first().textContent(), '', `${hash.slice(0, 40)}: a heading`);
    assert.equal(await page.locator('main[aria-busy="true"]').count(), 0, `${hash.slice(0, 40)}: not left loading`);
    await noXss(page, hash.slice(0, 40));
  }
});

test('the token shown once, closed with Escape: in no page, storage, URL, history or log', async () => {
  await page.goto(`${CONSOLE}/#/accounts/${account}`);
  await page.getByRole('heading', { name: 'Service account target' }).waitFor();
  const historyBefore = await page.evaluate(() => history.length);
  await page.getByRole('button', { name: 'New token' }).click();
  const dlg = page.getByRole('dialog');
  await dlg.getByLabel('invoices:read', { exact: true }).check();
  await dlg.getByRole('button', { name: 'Create token' }).click();
  await page.getByRole('dialog').getByText('Copy the token now').waitFor();
  const token = await page.getByRole('dialog').getByLabel('The token').inputValue();
  assert.match(token, /^sat_/, 'the token in its field');
  const secret = token.slice(21);
  await page.keyboard.press('Escape');
  await page.getByRole('dialog').waitFor({ state: 'detached' });
  await page.getByRole('heading', { name: 'Service account target' }).waitFor();
  const kept = await page.evaluate((s) => {
    const where = [];
    if (document.documentElement.outerHTML.includes(s)) where.push('DOM');
    if ([...document.querySelectorAll('input, textarea')].some((i) => i.value.includes(s))) where.push('a field');
    if (document.title.includes(s)) where.push('title');
    if (JSON.stringify(localStorage).includes(s)) where.push('localStorage');
    if (JSON.stringify(sessionStorage).includes(s)) where.push('sessionStorage');
    if (location.href.includes(s)) where.push('URL');
    if (JSON.stringify(history.state ?? null).includes(s)) where.push('history.state');
    if (document.cookie.includes(s)) where.push('cookie');
    if (performance.getEntries().some((e) => e.name.includes(s))) where.push('a resource URL');
    return where;
  }, secret);
  assert.deepEqual(kept, [], 'the token is nowhere in the page once closed with Escape');
  assert.equal(await page.evaluate(() => history.length), historyBefore, 'no history entry');
  assert.ok(!logged.some((l) => l.includes(secret)), 'never in the console log');
});

// an attacker's page, served as if from origin, posting and fetching to the
// console with the visitor's session (the proxy's header stands for its cookie)
function attackerPage(name) {
  const target = `${CONSOLE}/v1/teams/platform/accounts`;
  const body = `{"name":"${name}-form","x":"`;
  return `<!doctype html><title>evil</title>
<iframe name="sink"></iframe>
<form id="a" method="POST" enctype="text/plain" action="${target}" target="sink"><input name='${body}' value='"}'></form>
<form id="b" method="POST" enctype="application/x-www-form-urlencoded" action="${target}" target="sink"><input name="name" value="${name}-url"></form>
<form id="c" method="POST" enctype="multipart/form-data" action="${target}" target="sink"><input name="name" value="${name}-multi"></form>
<iframe id="frame" src="${CONSOLE}/"></iframe>
<script>
window.done = (async () => {
  const out = {};
  for (const f of ['a', 'b', 'c']) {
    document.getElementById(f).submit();
    await new Promise((r) => setTimeout(r, 300));
  }
  const post = (opt) => fetch(${JSON.stringify(target)}, Object.assign({ method: 'POST', credentials: 'include' }, opt))
    .then((r) => r.type + ':' + r.status, (e) => 'error');
  out.noCors = await post({ mode: 'no-cors', headers: { 'Content-Type': 'text/plain' }, body: '{"name":"${name}-nocors"}' });
  out.cors = await post({ mode: 'cors', headers: { 'Content-Type': 'application/json' }, body: '{"name":"${name}-cors"}' });
  out.read = await fetch(${JSON.stringify(`${CONSOLE}/v1/me`)}, { credentials: 'include' }).then((r) => r.text(), () => 'error');
  await new Promise((r) => { document.getElementById('frame').addEventListener('load', r); setTimeout(r, 3000); });
  out.beacon = navigator.sendBeacon(${JSON.stringify(target)}, new Blob(['{"name":"${name}-beacon"}'], { type: 'text/plain' }));
  return out;
})();
</script>`;
}

for (const kind of ['same site', 'cross site']) {
  test(`a page of another origin (${kind}) cannot write, read or frame the console`, async () => {
    const name = kind === 'same site' ? 'csrf-same' : 'csrf-cross';
    const origin = kind === 'same site' ? SAME_SITE : CROSS_SITE;
    const refusedBefore = await metric(/^sa_admin_requests_total\{route="account\.create",status="(?:403|415)"\}/);
    const evil = await open('alice');
    await evil.goto(`${origin}/evil.html?name=${name}`);
    const out = await evil.evaluate(() => window.done);
    assert.notEqual(out.cors, 'basic:201', 'a CORS write does not pass');
    assert.ok(!out.read.includes('"actor"'), 'the API answers no read of another origin');
    // the forms, no-cors fetch and beacon reached serve and were refused
    const refused = await until('the refusals counted', async () => {
      const n = await metric(/^sa_admin_requests_total\{route="account\.create",status="(?:403|415)"\}/);
      return n - refusedBefore >= 4 ? n - refusedBefore : 0;
    });
    assert.ok(refused >= 4, `serve refused the forms and the no-cors fetch (${refused})`);
    const names = (await api(page, 'GET', '/v1/teams/platform/accounts')).json.map((a) => a.name);
    assert.deepEqual(names.filter((n) => n.startsWith('csrf')), [], 'no account was created');
    // framed: refused by X-Frame-Options / frame-ancestors
    const urls = evil.frames().map((f) => f.url());
    assert.ok(!urls.some((u) => u.startsWith(CONSOLE)), `the console does not render in a frame of another origin (${urls})`);
    assert.equal(await evil.frameLocator('#frame').locator('a.brand, span#me, main#main').count(), 0, 'nothing of the console in the frame');
    for (const f of evil.frames()) {
      assert.equal(await f.evaluate(() => window.__xss).catch(() => undefined), undefined, `${kind}: nothing ran`);
    }
    await evil.context().close();
  });
}

async function until(what, fn, ms = 10000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test('no page error, dialog or CSP violation in any of it', async () => {
  const csp = logged.filter((l) => /Content Security Policy|Refused to/i.test(l)
    && !/frame-ancestors|X-Frame-Options/i.test(l));
  assert.deepEqual(problems, [], 'no page error or dialog');
  assert.deepEqual(csp, [], 'no CSP violation (but the refused frames)');
  await page.context().close();
});
