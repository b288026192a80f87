// The admin API, same origin, through the front proxy's session (the
// console never asks for nor keeps a token).  Errors are problem+json:
// their detail is what the page shows next to the cause.

export class ApiError extends Error {
  constructor(status, problem, text) {
    super((problem && problem.detail) || text || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

export const seg = (s) => encodeURIComponent(String(s));

export async function api(method, path, body) {
  const opt = {
    method,
    headers: { Accept: 'application/json' },
    credentials: 'same-origin',
    cache: 'no-store',
    redirect: 'error',
  };
  if (method !== 'GET') {
    opt.headers['Content-Type'] = 'application/json';
    opt.body = JSON.stringify(body || {});
  }
  let r;
  try {
    r = await fetch(path, opt);
  } catch (e) {
    throw new ApiError(0, null, 'the admin API cannot be reached');
  }
  const text = await r.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch (e) {
    data = null;
  }
  if (!r.ok) throw new ApiError(r.status, data, text.slice(0, 200));
  return data;
}

export function query(params) {
  const q = Object.entries(params).filter(([, v]) => v !== undefined && v !== null && v !== '')
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&');
  return q ? `?${q}` : '';
}
