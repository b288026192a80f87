// The console's only way to put things in the page: elements made with
// createElement, values as text nodes (never innerHTML), attributes by
// name.  No inline style or script: the CSP forbids them.

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') {
      el.addEventListener(k.slice(2), v);
    } else if (k === 'class') {
      el.className = v;
    } else if (k === 'checked' || k === 'disabled' || k === 'value') {
      el[k] = v;
    } else {
      el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

let seq = 0;
export function uid(prefix) {
  seq += 1;
  return `${prefix}-${seq}`;
}

// a labelled control: <label for=id>text</label> + the control
export function field(label, control, hint) {
  const id = control.id || uid('f');
  control.id = id;
  const hintEl = hint ? h('span', { class: 'hint', id: `${id}-hint` }, hint) : null;
  if (hintEl) control.setAttribute('aria-describedby', hintEl.id);
  return h('div', { class: 'field' }, h('label', { for: id }, label), control, hintEl);
}

// a check box with its label
export function checkbox(label, attrs) {
  const id = uid('c');
  const box = h('input', Object.assign({ type: 'checkbox', id }, attrs || {}));
  return { box, el: h('label', { class: 'check', for: id }, box, ' ', label) };
}

// the place an error is shown, next to its cause
export function errorSlot() {
  return h('p', { class: 'error', role: 'alert', hidden: true });
}

export function showError(slot, err) {
  slot.textContent = err ? (err.message || String(err)) : '';
  slot.hidden = !err;
}

// a button that shows progress while its action runs
export function actionButton(label, busyLabel, run, attrs) {
  const b = h('button', Object.assign({ type: 'button' }, attrs || {}), label);
  b.addEventListener('click', async (ev) => {
    ev.preventDefault();
    if (b.disabled) return;
    b.disabled = true;
    b.setAttribute('aria-busy', 'true');
    b.textContent = busyLabel;
    try {
      await run();
    } finally {
      b.disabled = false;
      b.removeAttribute('aria-busy');
      b.textContent = label;
    }
  });
  return b;
}

export function when(t) {
  return t ? String(t).replace('T', ' ').replace('Z', ' UTC') : '—';
}
