// sa-admin console (issue 23): teams and service accounts, access tokens,
// notifications, audit, over the /v1 API only.  Every value from the API
// reaches the page as text (dom.js), never as HTML.

import { api, seg, query } from './api.js';
import {
  h, append, clear, field, checkbox, errorSlot, showError, actionButton, when,
} from './dom.js';

const main = document.getElementById('main');
const meEl = document.getElementById('me');
const PERMS = ['service_accounts:create', 'service_accounts:delete', 'service_accounts:tokens'];
const EVENTS = ['token.issued', 'token.rescoped', 'token.rotated', 'token.revoked',
  'token.expiring', 'token.denied', 'token.quota_warning', 'token.quota_exhausted',
  'account.granted', 'account.ungranted', 'account.deleted'];

let me = null;

function may(team, perm) {
  if (!me) return false;
  if (me.operator) return true;
  const t = (me.teams || []).find((x) => x.team === team);
  return !!t && (t.owner || (perm && t.perms.includes(perm)));
}

function isOwner(team) {
  if (!me) return false;
  if (me.operator) return true;
  const t = (me.teams || []).find((x) => x.team === team);
  return !!t && t.owner;
}

function page(title, ...body) {
  clear(main);
  document.title = `${title} — sa-admin`;
  append(main, [h('h1', null, title), ...body]);
  main.focus();
}

function loading(what) {
  clear(main);
  main.setAttribute('aria-busy', 'true');
  append(main, [h('p', { class: 'progress', role: 'status' }, `Loading ${what}…`)]);
}

function failed(err) {
  main.removeAttribute('aria-busy');
  const slot = errorSlot();
  showError(slot, err);
  page('Something went wrong', slot, h('p', null, h('a', { href: '#/' }, 'Back to the teams')));
}

function link(href, text) {
  return h('a', { href }, text);
}

function table(caption, heads, rows, empty) {
  if (!rows.length) return h('p', { class: 'empty' }, empty);
  // each cell names its column: a narrow screen shows a row as a card
  for (const tr of rows) {
    [...tr.cells].forEach((td, i) => { if (heads[i]) td.dataset.label = heads[i]; });
  }
  return h('div', { class: 'scroll' }, h('table', { class: 'cards' },
    h('caption', null, caption),
    h('thead', null, h('tr', null, heads.map((x) => h('th', { scope: 'col' }, x)))),
    h('tbody', null, rows)));
}

// a <dialog>: focus inside, Escape closes; onclose runs always
function dialog(title, body, onclose) {
  const d = h('dialog', { 'aria-labelledby': 'dlg-title' },
    h('h2', { id: 'dlg-title' }, title), body);
  d.addEventListener('close', () => {
    if (onclose) onclose();
    d.remove();
  });
  document.body.append(d);
  d.showModal();
  return d;
}

function confirmDialog(title, text, label, run) {
  const err = errorSlot();
  let d;
  const ok = actionButton(label, 'Working…', async () => {
    try {
      await run();
      d.close();
    } catch (e) {
      showError(err, e);
    }
  }, { class: 'danger' });
  const cancel = h('button', { type: 'button', onclick: () => d.close() }, 'Cancel');
  d = dialog(title, h('div', null, h('p', null, text), err, h('div', { class: 'actions' }, cancel, ok)));
  cancel.focus();
}

// ------------------------------------------------------------------ teams

async function teamsPage() {
  const teams = me.teams || [];
  const rows = teams.map((t) => h('tr', null,
    h('td', null, link(`#/teams/${seg(t.team)}`, t.team)),
    h('td', null, t.owner ? 'owner' : (t.perms.length ? t.perms.join(', ') : 'read only'))));
  page('Teams', table('Your teams', ['Team', 'Your permissions'], rows,
    me.operator ? 'No teams yet: an operator creates them (sa-admin team create).'
      : 'You belong to no team yet: a team owner adds you.'));
}

async function teamPage(team) {
  loading(`team ${team}`);
  const [members, accounts, apps] = await Promise.all([
    api('GET', `/v1/teams/${seg(team)}/members`),
    api('GET', `/v1/teams/${seg(team)}/accounts`),
    api('GET', `/v1/apps${query({ team })}`),
  ]);
  main.removeAttribute('aria-busy');
  const emails = new Map(accounts.map((a) => [a.email, a]));
  const people = members.filter((m) => !emails.has(m.user));
  const permsOf = new Map(members.map((m) => [m.user, m.perms]));

  const peopleRows = people.map((m) => h('tr', null,
    h('td', null, m.user), h('td', null, m.owner ? 'owner' : (m.perms.join(', ') || 'read only'))));

  const acctRows = accounts.map((a) => h('tr', null,
    h('td', null, link(`#/accounts/${seg(a.id)}`, a.name)),
    h('td', null, (a.apps || []).join(', ') || '—'),
    h('td', null, (permsOf.get(a.email) || []).join(', ') || '—'),
    h('td', null, may(team, 'service_accounts:delete')
      ? h('button', { type: 'button', class: 'danger', onclick: () => deleteAccount(a, team) },
        'Delete', h('span', { class: 'sr' }, ` ${a.name}`))
      : '')));

  const addBtn = may(team, 'service_accounts:create')
    ? h('button', { type: 'button', class: 'primary', onclick: () => newAccount(team, apps) }, '+ Service account')
    : null;

  page(`Team ${team}`,
    h('p', null, link(`#/teams/${seg(team)}/audit`, 'Audit log'), ' · ', link('#/', 'All teams')),
    h('h2', null, 'Service accounts'),
    addBtn,
    table('Service accounts', ['Name', 'Applications', 'Team permissions', ''], acctRows,
      addBtn ? 'No service accounts yet: + Service account' : 'No service accounts yet.'),
    h('h2', null, 'People'),
    table('People', ['User', 'Permissions'], peopleRows, 'No members yet.'));
}

function newAccount(team, apps) {
  const name = h('input', { type: 'text', required: true, autocomplete: 'off', pattern: '[a-z0-9][a-z0-9_.-]*', maxlength: 63 });
  const nameErr = errorSlot();
  const appBoxes = apps.map((a) => ({ app: a.name, ...checkbox(a.name) }));
  const permBoxes = PERMS.map((p) => ({ perm: p, ...checkbox(p) }));
  const err = errorSlot();
  let d;
  const create = actionButton('Create', 'Creating…', async () => {
    showError(nameErr, null);
    showError(err, null);
    if (!name.value) {
      showError(nameErr, new Error('A name is needed.'));
      name.focus();
      return;
    }
    let acct;
    try {
      acct = await api('POST', `/v1/teams/${seg(team)}/accounts`, {
        name: name.value, apps: appBoxes.filter((b) => b.box.checked).map((b) => b.app),
      });
    } catch (e) {
      showError(e.status === 400 || e.status === 409 ? nameErr : err, e);
      return;
    }
    const perms = permBoxes.filter((b) => b.box.checked).map((b) => b.perm);
    if (perms.length) {
      try {
        await api('PUT', `/v1/teams/${seg(team)}/members/${seg(acct.email)}`, { perms });
      } catch (e) {
        showError(err, new Error(`The account was created, but its team permissions were not set: ${e.message}`));
        return;
      }
    }
    d.close();
    route();
  }, { class: 'primary' });
  const form = h('form', { novalidate: true },
    field('Name', name, 'lower case letters, digits, _ . -'), nameErr,
    h('fieldset', null, h('legend', null, 'Applications'),
      appBoxes.length ? appBoxes.map((b) => b.el) : h('p', { class: 'empty' }, 'No application serves this team yet.')),
    isOwner(team) ? h('fieldset', null, h('legend', null, 'Team permissions'), permBoxes.map((b) => b.el)) : null,
    err,
    h('div', { class: 'actions' }, h('button', { type: 'button', onclick: () => d.close() }, 'Cancel'), create));
  form.addEventListener('submit', (e) => { e.preventDefault(); create.click(); });
  d = dialog('New service account', form);
  name.focus();
}

function deleteAccount(a, team) {
  confirmDialog(`Delete ${a.name}?`,
    `The service account ${a.name} of team ${team} goes, with every token it holds (revoked at once) and its notifications.`,
    'Delete', async () => {
      await api('DELETE', `/v1/accounts/${seg(a.id)}`);
      route();
    });
}

// ------------------------------------------------------------------ tokens

// the catalogue's check boxes for an account's applications, grouped
function scopeBoxes(catalogue, accountApps, checked) {
  const all = accountApps.includes('*');
  const groups = new Map();
  for (const s of catalogue) {
    if (!all && !accountApps.includes(s.application)) continue;
    if (!groups.has(s.application)) groups.set(s.application, []);
    groups.get(s.application).push(s);
  }
  const boxes = [];
  const seen = new Set();
  const sets = [];
  for (const [app, scopes] of groups) {
    const items = scopes.map((s) => {
      const c = checkbox(s.scope, { checked: checked.includes(s.scope), value: s.scope });
      c.box.dataset.scope = s.scope;
      boxes.push(c.box);
      seen.add(s.scope);
      if (!s.description) return c.el;
      const hint = h('span', { class: 'hint', id: `${c.box.id}-d` }, s.description);
      c.box.setAttribute('aria-describedby', hint.id);
      return h('div', { class: 'scope' }, c.el, hint);
    });
    sets.push(h('fieldset', null, h('legend', null, app), items));
  }
  // scopes the token holds outside the catalogue stay visible
  const extra = checked.filter((s) => !seen.has(s));
  if (extra.length) {
    sets.push(h('fieldset', null, h('legend', null, 'Not in any catalogue'), extra.map((s) => {
      const c = checkbox(s, { checked: true, value: s });
      c.box.dataset.scope = s;
      boxes.push(c.box);
      return c.el;
    })));
  }
  if (!sets.length) {
    sets.push(h('p', { class: 'empty' }, 'No scopes in the catalogue of this account\'s applications (sa-admin scope define).'));
  }
  return { el: h('div', { class: 'scopes' }, sets), picked: () => [...new Set(boxes.filter((b) => b.checked).map((b) => b.dataset.scope))] };
}

function soon(t) {
  if (!t.expires_at || t.status !== 'active') return false;
  return Date.parse(t.expires_at) - Date.now() < 14 * 86400 * 1000;
}

async function accountPage(id) {
  loading('the account');
  const acct = await api('GET', `/v1/accounts/${seg(id)}`);
  const [tokens, catalogue] = await Promise.all([
    api('GET', `/v1/accounts/${seg(id)}/tokens`),
    api('GET', '/v1/scopes'),
  ]);
  main.removeAttribute('aria-busy');
  const canTokens = may(acct.team, 'service_accounts:tokens');

  const rows = tokens.map((t) => h('tr', { class: soon(t) ? 'soon' : null },
    h('td', null, h('code', null, t.id)),
    h('td', null, t.status),
    h('td', null, (t.scopes || []).join(', ') || '—'),
    h('td', null, when(t.created_at)),
    h('td', null, when(t.expires_at), soon(t) ? h('strong', { class: 'badge' }, ' expiring soon') : null),
    h('td', null, when(t.last_used_at)),
    h('td', { class: 'row-actions' }, canTokens && t.status === 'active' ? [
      h('button', { type: 'button', onclick: () => editScopes(acct, t, catalogue) }, 'Edit', h('span', { class: 'sr' }, ` ${t.id}`)),
      h('button', { type: 'button', onclick: () => rotateToken(t) }, 'Rotate', h('span', { class: 'sr' }, ` ${t.id}`)),
      h('button', { type: 'button', class: 'danger', onclick: () => revokeToken(t) }, 'Revoke', h('span', { class: 'sr' }, ` ${t.id}`)),
    ] : '')));

  page(`Service account ${acct.name}`,
    h('p', null, 'Team ', link(`#/teams/${seg(acct.team)}`, acct.team), ' · id ', h('code', null, acct.id),
      ' · applications: ', (acct.apps || []).join(', ') || 'none',
      ' · ', link(`#/teams/${seg(acct.team)}/audit${query({ account: acct.id })}`, 'Audit log')),
    h('h2', null, 'Access tokens'),
    canTokens ? h('button', { type: 'button', class: 'primary', onclick: () => newToken(acct, catalogue) }, 'New token') : null,
    table('Access tokens', ['Id', 'Status', 'Scopes', 'Created', 'Expires', 'Last used', ''], rows,
      canTokens ? 'No tokens yet: New token.' : 'No tokens yet.'));
}

function showSecret(title, secret) {
  const input = h('input', { type: 'text', readonly: true, value: secret, class: 'secret', 'aria-label': 'The token', spellcheck: 'false', autocomplete: 'off' });
  const status = h('span', { role: 'status', class: 'hint' });
  const copy = h('button', { type: 'button', class: 'primary' }, 'Copy');
  copy.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(input.value);
      status.textContent = 'Copied.';
    } catch (e) {
      input.select();
      status.textContent = 'Select the text and copy it (Ctrl+C).';
    }
  });
  let d;
  // never kept in the page once closed: cleared before the dialog goes
  const forget = () => { input.value = ''; };
  const done = h('button', { type: 'button', onclick: () => { forget(); d.close(); } }, 'Done');
  d = dialog(title, h('div', null,
    h('p', { class: 'warning' }, 'Copy the token now: it will not be shown again.'),
    h('div', { class: 'copyrow' }, input, copy), status,
    h('div', { class: 'actions' }, done)), () => {
    forget();
    route();
  });
  d.addEventListener('cancel', forget);
  input.select();
  copy.focus();
}

function newToken(acct, catalogue) {
  const sb = scopeBoxes(catalogue, acct.apps || [], []);
  const expires = h('select', null, [['30d', '30 days'], ['90d', '90 days'], ['365d', '1 year'], ['', 'Never']]
    .map(([v, l]) => h('option', { value: v, selected: v === '90d' }, l)));
  const err = errorSlot();
  let d;
  const issue = actionButton('Create token', 'Creating…', async () => {
    showError(err, null);
    let t;
    try {
      const body = { scopes: sb.picked() };
      if (expires.value) body.expires = expires.value;
      t = await api('POST', `/v1/accounts/${seg(acct.id)}/tokens`, body);
    } catch (e) {
      showError(err, e);
      return;
    }
    const secret = t.token;
    t.token = null;
    d.close();
    showSecret(`Token ${t.id}`, secret);
  }, { class: 'primary' });
  d = dialog(`New token for ${acct.name}`, h('form', { novalidate: true },
    h('p', null, 'Scopes'), sb.el, field('Expires', expires), err,
    h('div', { class: 'actions' }, h('button', { type: 'button', onclick: () => d.close() }, 'Cancel'), issue)));
  expires.focus();
}

function editScopes(acct, t, catalogue) {
  const sb = scopeBoxes(catalogue, acct.apps || [], t.scopes || []);
  const err = errorSlot();
  let d;
  const save = actionButton('Save changes', 'Saving…', async () => {
    showError(err, null);
    try {
      await api('PUT', `/v1/tokens/${seg(t.id)}/scopes`, { scopes: sb.picked() });
    } catch (e) {
      showError(err, e);
      return;
    }
    d.close();
    route();
  }, { class: 'primary' });
  d = dialog(`Scopes of token ${t.id}`, h('form', { novalidate: true }, sb.el, err,
    h('div', { class: 'actions' }, h('button', { type: 'button', onclick: () => d.close() }, 'Cancel'), save)));
  save.focus();
}

function rotateToken(t) {
  const overlap = h('select', null, [['0', 'Stop the old one at once'], ['1h', '1 hour'], ['24h', '1 day'], ['7d', '1 week']]
    .map(([v, l]) => h('option', { value: v }, l)));
  const err = errorSlot();
  let d;
  const go = actionButton('Rotate', 'Rotating…', async () => {
    showError(err, null);
    let n;
    try {
      n = await api('POST', `/v1/tokens/${seg(t.id)}/rotate`, { overlap: overlap.value });
    } catch (e) {
      showError(err, e);
      return;
    }
    const secret = n.token;
    n.token = null;
    d.close();
    showSecret(`Token ${n.id} (replaces ${t.id})`, secret);
  }, { class: 'primary' });
  d = dialog(`Rotate token ${t.id}`, h('div', null,
    h('p', null, 'A new token with the same scopes and lifetime; the old one keeps working for the overlap.'),
    field('Overlap', overlap), err,
    h('div', { class: 'actions' }, h('button', { type: 'button', onclick: () => d.close() }, 'Cancel'), go)));
  overlap.focus();
}

function revokeToken(t) {
  confirmDialog(`Revoke token ${t.id}?`, 'It stops working at every gateway at once. This cannot be undone.',
    'Revoke', async () => {
      await api('DELETE', `/v1/tokens/${seg(t.id)}`);
      route();
    });
}

// ------------------------------------------------------------------ applications

async function appsPage() {
  loading('the applications');
  const apps = await api('GET', '/v1/apps');
  main.removeAttribute('aria-busy');
  const rows = apps.map((a) => h('tr', null,
    h('td', null, link(`#/apps/${seg(a.name)}`, a.name)),
    h('td', null, a.team), h('td', null, (a.shared || []).join(', ') || '—')));
  page('Applications', table('Applications', ['Application', 'Owner team', 'Shared with'], rows,
    'No applications yet: an operator creates them (sa-admin app create).'));
}

// the accounts of my teams granted app
async function grantedAccounts(app) {
  const lists = await Promise.all((me.teams || []).map((t) => api('GET', `/v1/teams/${seg(t.team)}/accounts`).catch(() => [])));
  return lists.flat().filter((a) => (a.apps || []).includes(app) || (a.apps || []).includes('*'));
}

async function appPage(app, accountId) {
  loading(`application ${app}`);
  const [accounts, subs, failedAll, catalogue] = await Promise.all([
    grantedAccounts(app),
    api('GET', `/v1/apps/${seg(app)}/notifications`),
    api('GET', `/v1/notifications/failed${query({ app })}`).catch(() => []),
    api('GET', `/v1/scopes${query({ app })}`).catch(() => []),
  ]);
  main.removeAttribute('aria-busy');

  const pick = h('select', null, h('option', { value: '' }, '— choose a service account —'),
    accounts.map((a) => h('option', { value: a.id, selected: a.id === accountId }, `${a.team}/${a.name}`)));
  pick.addEventListener('change', () => {
    location.hash = `#/apps/${seg(app)}${pick.value ? `/${seg(pick.value)}` : ''}`;
  });

  const current = accounts.find((a) => a.id === accountId);
  const sub = current ? subs.find((s) => s.account && s.account.id === current.id) : null;

  const catRows = catalogue.map((s) => h('tr', null, h('td', null, h('code', null, s.scope)), h('td', null, s.description || '—')));

  page(`Application ${app}`,
    h('h2', null, 'Scopes'),
    table('Scope catalogue', ['Scope', 'Description'], catRows, 'No scopes in its catalogue yet (sa-admin scope define).'),
    h('h2', null, 'Notifications'),
    accounts.length ? field('Switch user', pick, 'the service accounts granted this application')
      : h('p', { class: 'empty' }, 'No service account of your teams is granted this application.'),
    current ? notifyForm(app, current, sub) : null,
    h('h2', null, 'Failed deliveries'),
    failedTable(failedAll));
}

// an event's name may break after its dots and underscores at 375 px
// (token.quota_exhausted), never inside a word
function breakable(name) {
  return name.split(/(?<=[._])/).flatMap((part, i) => (i ? [h('wbr'), part] : [part]));
}

function notifyForm(app, acct, sub) {
  const events = new Set(sub ? sub.events : []);
  const all = events.has('*');
  // a stored URL is never shown back whole (a Slack URL is a secret): its
  // host only, and Save keeps it unless a new one is typed
  const slack = h('input', { type: 'url', autocomplete: 'off', placeholder: sub && sub.slack ? 'kept unless you type a new one' : 'https://hooks.slack.com/services/…' });
  const webhook = h('input', { type: 'url', autocomplete: 'off', placeholder: sub && sub.webhook ? 'kept unless you type a new one' : 'https://example.com/hook' });
  const stored = (dest) => (sub && sub[dest] ? `stored: ${sub[dest]} (kept when left empty)` : null);
  const slackOn = checkbox('Slack', { checked: !!(sub && sub.slack) });
  const hookOn = checkbox('Webhook', { checked: !!(sub && sub.webhook) });
  // per event, a Slack toggle and a webhook toggle
  const takes = (dest) => {
    if (!sub || !sub[dest]) return new Set();
    const only = sub[`${dest}_events`];
    if (Array.isArray(only)) return new Set(only.includes('*') ? EVENTS : only);
    return all ? new Set(EVENTS) : events;
  };
  const slackTakes = takes('slack');
  const hookTakes = takes('webhook');
  const rows = EVENTS.map((e) => ({
    ev: e,
    slack: h('input', { type: 'checkbox', checked: slackTakes.has(e), 'aria-label': `${e} by Slack` }),
    webhook: h('input', { type: 'checkbox', checked: hookTakes.has(e), 'aria-label': `${e} by webhook` }),
  }));
  const eventTable = h('div', { class: 'scroll' }, h('table', { class: 'events' },
    h('caption', null, 'Events: what each destination gets'),
    h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'Event'), h('th', { scope: 'col' }, 'Slack'),
      h('th', { scope: 'col' }, 'Webhook'))),
    h('tbody', null, rows.map((r) => h('tr', null, h('th', { scope: 'row' }, breakable(r.ev)),
      h('td', null, r.slack), h('td', null, r.webhook))))));
  const err = errorSlot();
  const testErr = errorSlot();
  const testOk = h('p', { role: 'status', class: 'hint' });
  const can = may(acct.team, 'service_accounts:create');

  const save = actionButton('Save', 'Saving…', async () => {
    showError(err, null);
    const body = {};
    const picked = (dest) => rows.filter((r) => r[dest].checked).map((r) => r.ev);
    if (!slackOn.box.checked && picked('slack').length) {
      showError(err, new Error('Events are ticked for Slack: turn Slack on and give its URL, or untick them.'));
      slackOn.box.focus();
      return;
    }
    if (!hookOn.box.checked && picked('webhook').length) {
      showError(err, new Error('Events are ticked for the webhook: turn the webhook on and give its URL, or untick them.'));
      hookOn.box.focus();
      return;
    }
    const keep = [];
    if (slackOn.box.checked) {
      if (slack.value) body.slack = slack.value;
      else if (sub && sub.slack) keep.push('slack');
      else { showError(err, new Error('Give the Slack URL.')); slack.focus(); return; }
      body.slack_events = picked('slack');
    }
    if (hookOn.box.checked) {
      if (webhook.value) body.webhook = webhook.value;
      else if (sub && sub.webhook) keep.push('webhook');
      else { showError(err, new Error('Give the webhook URL.')); webhook.focus(); return; }
      body.webhook_events = picked('webhook');
    }
    if (keep.length) body.keep = keep;
    body.events = [...new Set([...(body.slack_events || []), ...(body.webhook_events || [])])];
    if (!body.events.length) {
      showError(err, new Error('Tick at least one event for Slack or the webhook.'));
      return;
    }
    for (const d of ['slack', 'webhook']) {
      if (body[`${d}_events`] && !body[`${d}_events`].length) {
        showError(err, new Error(`Tick an event for ${d === 'slack' ? 'Slack' : 'the webhook'}, or turn it off.`));
        return;
      }
    }
    let out;
    try {
      out = await api('PUT', `/v1/apps/${seg(app)}/notifications/${seg(acct.id)}`, body);
    } catch (e) {
      showError(err, e);
      return;
    }
    if (out && out.secret) {
      showSecret('Webhook signing secret', out.secret);
      out.secret = null;
    } else {
      route();
    }
  }, { class: 'primary', disabled: !can });

  const test = actionButton('Send test', 'Sending…', async () => {
    showError(testErr, null);
    testOk.textContent = '';
    try {
      await api('POST', `/v1/apps/${seg(app)}/notifications/${seg(acct.id)}/test`);
      testOk.textContent = 'Test queued: a ping is on its way.';
    } catch (e) {
      showError(testErr, e);
    }
  }, { disabled: !can || !sub });

  const remove = sub && can ? h('button', { type: 'button', class: 'danger', onclick: () => confirmDialog(
    'Stop these notifications?', `${acct.team}/${acct.name} gets no more notifications of ${app}.`, 'Remove', async () => {
      await api('DELETE', `/v1/apps/${seg(app)}/notifications/${seg(acct.id)}`);
      route();
    }) }, 'Remove') : null;

  return h('section', { class: 'card', 'aria-label': `Notifications of ${acct.name}` },
    h('p', null, sub ? `Subscribed since ${when(sub.created_at)}.` : 'No notifications yet.'),
    h('fieldset', null, h('legend', null, 'Where'),
      h('div', { class: 'channel' }, slackOn.el, field('Slack URL', slack, stored('slack'))),
      h('div', { class: 'channel' }, hookOn.el, field('Webhook URL', webhook, stored('webhook')))),
    eventTable,
    err,
    h('div', { class: 'actions' }, remove, test, save), testErr, testOk);
}

function failedTable(failed) {
  const rows = failed.map((f) => {
    const err = errorSlot();
    return h('tr', null,
      h('td', null, f.type), h('td', null, f.team && f.account ? `${f.team}/${f.account}` : (f.account || '—')),
      h('td', null, f.destination || f.dest || '—'), h('td', null, String(f.attempts ?? '—')),
      h('td', null, f.error || '—'), h('td', null, when(f.failed_at)),
      h('td', null, actionButton('Retry', 'Queuing…', async () => {
        showError(err, null);
        try {
          await api('POST', `/v1/notifications/failed/${seg(f.id)}/retry`);
          route();
        } catch (e) {
          showError(err, e);
        }
      }), err));
  });
  return table('Failed deliveries', ['Event', 'Account', 'Destination', 'Attempts', 'Error', 'Failed at', ''], rows,
    'No failed deliveries.');
}

// ------------------------------------------------------------------ audit

// newest first, 25 a page; the API filters (account, actor) and pages:
// an entry's id is the cursor, so entries added meanwhile shift no page
const PAGE = 25;

async function auditPage(team, params) {
  loading(`the audit log of ${team}`);
  const want = {
    account: params.get('account') || '', actor: params.get('actor') || '',
    before: params.get('before') || '', after: params.get('after') || '',
  };
  const q = { team, account: want.account, actor: want.actor, limit: PAGE + 1 };
  if (want.after) Object.assign(q, { order: 'oldest', after: want.after });
  else Object.assign(q, { order: 'newest', before: want.before });
  const [accounts, members, got] = await Promise.all([
    api('GET', `/v1/teams/${seg(team)}/accounts`).catch(() => []),
    api('GET', `/v1/teams/${seg(team)}/members`).catch(() => []),
    api('GET', `/v1/audit${query(q)}`).catch((e) => e),
  ]);
  main.removeAttribute('aria-busy');
  const names = new Map(accounts.map((a) => [a.id, a.name]));

  const account = h('select', null, h('option', { value: '' }, 'All accounts'),
    accounts.map((a) => h('option', { value: a.id, selected: a.id === want.account }, a.name)),
    want.account && !names.has(want.account)
      ? h('option', { value: want.account, selected: true }, want.account) : null);
  const people = h('datalist', { id: 'audit-actors' },
    members.map((m) => h('option', { value: m.user })));
  const actor = h('input', { type: 'search', value: want.actor, autocomplete: 'off', list: 'audit-actors' });
  const filterErr = errorSlot();
  const go = (extra) => {
    const hash = `#/teams/${seg(team)}/audit${query({ account: account.value, actor: actor.value.trim(), ...extra })}`;
    if (location.hash === hash) route();
    else location.hash = hash;
  };
  const filter = h('form', { class: 'filters', 'aria-label': 'Filter the audit log' },
    field('Account', account), field('Actor', actor, 'exactly, as it is shown'), people,
    h('div', { class: 'field submit' }, h('button', { type: 'submit' }, 'Filter')));
  filter.addEventListener('submit', (e) => { e.preventDefault(); go({}); });

  let list;
  if (got instanceof Error) {
    showError(filterErr, got);
    list = null;
  } else {
    let entries; let older; let newer;
    if (want.after) {
      newer = got.length > PAGE;
      entries = got.slice(0, PAGE).reverse();
      older = true;
    } else {
      older = got.length > PAGE;
      entries = got.slice(0, PAGE);
      newer = !!want.before;
    }
    const target = (t) => (names.has(t) ? `${names.get(t)} (${t})` : (t || '—'));
    const rows = entries.map((e) => h('tr', null,
      h('td', null, when(e.time)), h('td', null, e.actor), h('td', null, e.action), h('td', null, target(e.target))));
    const filtered = want.account || want.actor;
    const older_ = h('button', { type: 'button', disabled: !older || !entries.length,
      onclick: () => go({ before: entries[entries.length - 1].id }) }, 'Older');
    const newer_ = h('button', { type: 'button', disabled: !newer || !entries.length,
      onclick: () => go({ after: entries[0].id }) }, 'Newer');
    list = [
      table('Audit entries, newest first', ['Time', 'Actor', 'Action', 'Target'], rows,
        filtered ? 'No entry matches.' : 'No audit entries yet.'),
      h('nav', { class: 'pager', 'aria-label': 'Pages' }, newer_,
        h('span', null, entries.length ? `${entries.length} entr${entries.length === 1 ? 'y' : 'ies'}` : ''), older_),
    ];
  }
  page(`Audit log of ${team}`,
    h('p', null, link(`#/teams/${seg(team)}`, `Back to team ${team}`)),
    filter, filterErr, list);
}

// ------------------------------------------------------------------ routing

async function route() {
  const shown = location.hash;
  delete main.dataset.shown;
  const [path, qs] = (location.hash.replace(/^#/, '') || '/').split('?');
  const params = new URLSearchParams(qs || '');
  // a malformed %-escape in the hash is a page that does not exist (the
  // URIError left the page loading, unhandled)
  const parts = path.split('/').filter(Boolean).map((p) => {
    try {
      return decodeURIComponent(p);
    } catch (e) {
      return null;
    }
  });
  try {
    me = await api('GET', '/v1/me');
    clear(meEl);
    append(meEl, ['Signed in as ', h('strong', null, me.actor), me.operator ? ' (operator)' : '']);
    if (parts.includes(null)) page('Not found', h('p', null, 'No such page. ', link('#/', 'Teams')));
    else if (parts.length === 0) await teamsPage();
    else if (parts[0] === 'teams' && parts.length === 2) await teamPage(parts[1]);
    else if (parts[0] === 'teams' && parts[2] === 'audit') await auditPage(parts[1], params);
    else if (parts[0] === 'accounts' && parts.length === 2) await accountPage(parts[1]);
    else if (parts[0] === 'apps' && parts.length === 1) await appsPage();
    else if (parts[0] === 'apps') await appPage(parts[1], parts[2]);
    else page('Not found', h('p', null, 'No such page. ', link('#/', 'Teams')));
  } catch (e) {
    failed(e);
  }
  // the view of that address is complete (what tests wait for)
  if (location.hash === shown) main.dataset.shown = shown;
}

window.addEventListener('hashchange', route);
route();
