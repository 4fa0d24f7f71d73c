// jobq console: a page over jobqd's JSON API (/api/v1). Everything shown that comes from the
// service (queue names, payloads, errors) is put in with textContent, never parsed as HTML. The
// token lives in this tab's sessionStorage and goes out as an Authorization header only: no
// cookie, so another site cannot make this browser act here.
'use strict';

const TOKEN_KEY = 'jobq.console.token';
const REFRESH_MS = 3000;
const OVERVIEW_EVERY_MS = 10000; // Stats counts by scanning the table (0.3 s at a million jobs)
const THROUGHPUT_EVERY_MS = 30000; // the chart reads an hour of the finished-jobs index
const PAGE_SIZE = 50;
const STATES = ['pending', 'processing', 'completed', 'failed', 'cancelled'];
const SVG = 'http://www.w3.org/2000/svg';

const state = { role: '', busy: false, selected: new Set(), timer: null, renderId: 0, throughput: null, throughputAt: 0, overviewAt: 0 };

// ---- small helpers ----

// el(tag, props, ...children): props are properties (className, href, type, ...) and data-*
// attributes; children are nodes or text (added as text nodes). No caller passes innerHTML.
function el(tag, props, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null) continue;
    if (k.startsWith('data-') || k.startsWith('aria-')) e.setAttribute(k, String(v));
    else if (k === 'onclick' || k === 'onchange' || k === 'onsubmit') e.addEventListener(k.slice(2), v);
    else e[k] = v;
  }
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function setStatus(text, info) {
  const s = document.getElementById('status');
  s.textContent = text || '';
  s.className = info ? 'info' : '';
}

function token() { return sessionStorage.getItem(TOKEN_KEY) || ''; }
function isAdmin() { return state.role === 'admin'; }

class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

async function api(path, body) {
  const headers = { Accept: 'application/json' };
  if (token()) headers.Authorization = 'Bearer ' + token();
  const init = { method: body === undefined ? 'GET' : 'POST', headers, cache: 'no-store', credentials: 'omit' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await fetch('/api/v1/' + path, init);
  let data = null;
  try { data = await res.json(); } catch (e) { data = null; }
  if (!res.ok) {
    throw new ApiError(res.status, data && data.code ? data.code : 'HTTP_' + res.status,
      data && data.message ? data.message : res.statusText);
  }
  return data;
}

function showError(e) {
  if (e instanceof ApiError) setStatus(e.code + ': ' + e.message);
  else setStatus(String(e && e.message ? e.message : e));
}

function fmtTime(ms) { return ms ? new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '—'; }

function fmtAge(seconds) {
  if (!seconds) return '—';
  const s = Math.round(seconds);
  if (s < 60) return s + ' s';
  if (s < 3600) return Math.floor(s / 60) + ' min ' + (s % 60) + ' s';
  return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
}

function parseHash() {
  const h = location.hash.replace(/^#/, '') || '/';
  const q = h.indexOf('?');
  const path = q < 0 ? h : h.slice(0, q);
  return { path, params: new URLSearchParams(q < 0 ? '' : h.slice(q + 1)) };
}

function hashFor(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) if (v !== undefined && v !== null && v !== '') q.set(k, v);
  const s = q.toString();
  return '#' + path + (s ? '?' + s : '');
}

function statusCell(status) { return el('td', { className: 'status-' + status, 'data-status': status }, status); }

function jobLink(id) { return el('a', { href: hashFor('/job/' + id), 'data-job': id }, '#' + id); }

// svg(tag, attrs, ...children): an SVG element; attributes are set one by one, never parsed.
function svg(tag, attrs, ...children) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

// throughputChart: one bar per minute of the last hour, the current minute at the right.
function throughputChart(minutes) {
  const W = 600, H = 90, bw = W / minutes.length;
  const peak = Math.max(0, ...minutes.map((m) => m.completed));
  const scale = Math.max(1, peak);
  const total = minutes.reduce((n, m) => n + m.completed, 0);
  const bars = minutes.map((m, i) => {
    const h = Math.round((m.completed / scale) * (H - 4));
    return svg('rect', { x: (i * bw + 1).toFixed(1), y: H - h, width: (bw - 2).toFixed(1), height: h, class: 'bar', 'data-minute': m.at_ms },
      svg('title', {}, fmtTime(m.at_ms) + ': ' + m.completed + ' completed'));
  });
  return el('figure', { id: 'throughput' },
    svg('svg', { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: 'img', 'aria-label': 'jobs completed per minute, last hour' },
      svg('line', { x1: 0, y1: H - 0.5, x2: W, y2: H - 0.5, class: 'axis' }), ...bars),
    el('figcaption', { className: 'muted' }, el('span', { id: 'throughput-total' }, String(total)),
      ' jobs completed in the last hour (peak ' + peak + ' a minute; one bar a minute, now at the right)'));
}

async function throughput() {
  if (!state.throughput || Date.now() - state.throughputAt > THROUGHPUT_EVERY_MS) {
    state.throughput = await api('throughput');
    state.throughputAt = Date.now();
  }
  return state.throughput;
}

// ---- views ----

async function viewOverview(root) {
  const [data, tp] = await Promise.all([api('queues'), throughput()]);
  root.append(el('h2', {}, 'Completed per minute'), throughputChart(tp.minutes));
  root.append(el('h2', {}, 'Queues'));
  if (data.queues.length === 0) {
    root.append(el('p', { className: 'muted', id: 'no-queues' }, 'No jobs yet.'));
    return;
  }
  const head = el('tr', {}, el('th', {}, 'Queue'),
    ...['pending', 'scheduled', 'processing', 'failed', 'completed', 'cancelled'].map((k) => el('th', { className: 'num' }, k)),
    el('th', { className: 'num' }, 'oldest due job'), el('th', {}, 'state'), el('th', {}, 'limits'),
    isAdmin() ? el('th', {}, 'actions') : null);
  const rows = data.queues.map((q) => el('tr', { 'data-queue': q.queue },
    el('td', {}, el('a', { href: hashFor('/jobs', { queue: q.queue }) }, q.queue)),
    ...['pending', 'scheduled', 'processing', 'failed', 'completed', 'cancelled'].map((k) => el('td', { className: 'num', 'data-count': k },
      k === 'scheduled' ? String(q[k]) : el('a', { href: hashFor(k === 'failed' ? '/failed' : '/jobs', { queue: q.queue, state: k === 'failed' ? undefined : k }) }, String(q[k])))),
    el('td', { className: 'num', 'data-count': 'oldest' }, fmtAge(q.oldest_due_age_seconds)),
    el('td', { 'data-flow': 'paused', className: q.paused ? 'paused' : '' }, q.paused ? 'paused' : 'running'),
    el('td', { 'data-flow': 'limits' }, limitsText(q)),
    isAdmin() ? el('td', {}, queueButton(q)) : null));
  root.append(el('table', { id: 'queues' }, el('thead', {}, head), el('tbody', {}, ...rows)));
  root.append(el('p', { className: 'muted' }, 'pending counts the scheduled jobs too (pending, not yet due). Completed and cancelled jobs are removed after the retention period. A paused queue keeps its jobs; Claims get none of them until it is resumed.'));
  if (isAdmin()) root.append(limitsForm());
}

function limitsText(q) {
  const out = [];
  if (q.concurrency_limit) out.push('at most ' + q.concurrency_limit + ' running');
  if (q.key_concurrency_limit) out.push('at most ' + q.key_concurrency_limit + ' running per key');
  if (q.rate_limit) out.push(q.rate_limit + ' claims per ' + fmtPeriod(q.rate_period_ms));
  return out.length ? out.join('; ') : 'none';
}

function fmtPeriod(ms) {
  if (ms % 3600000 === 0) return ms / 3600000 + ' h';
  if (ms % 60000 === 0) return ms / 60000 + ' min';
  if (ms % 1000 === 0) return ms / 1000 + ' s';
  return ms + ' ms';
}

function queueButton(q) {
  const queue = q.queue;
  if (q.paused)
    return el('button', { type: 'button', 'data-action': 'resume', 'data-queue': queue, onclick: () => act(() => api('queues/resume', { queue }), 'queue ' + queue + ' resumed') }, 'Resume');
  return el('button', { type: 'button', className: 'danger', 'data-action': 'pause', 'data-queue': queue, onclick: () => act(() => api('queues/pause', { queue }), 'queue ' + queue + ' paused') }, 'Pause');
}

// limitsForm: set or clear a queue's concurrency and rate limits (ConfigureQueue); the service
// checks the numbers and answers INVALID_ARGUMENT naming the field.
function limitsForm() {
  const num = (id, label, placeholder) => el('input', { type: 'number', id, min: 1, placeholder, 'aria-label': label });
  const queue = el('input', { type: 'text', id: 'limits-queue', placeholder: 'queue', 'aria-label': 'queue' });
  const conc = num('limits-concurrency', 'concurrency limit', 'jobs');
  const rate = num('limits-rate', 'rate limit', 'claims');
  const period = el('input', { type: 'number', id: 'limits-period', min: 0.001, step: 'any', placeholder: 'seconds', 'aria-label': 'rate period in seconds' });
  const send = (body, done) => {
    const q = queue.value.trim();
    return act(() => api('queues/configure', { queue: q, ...body }), 'queue ' + q + ': ' + done);
  };
  const int = (input) => Number.parseInt(input.value, 10) || 0;
  return el('form', { className: 'toolbar', id: 'limits', onsubmit: (ev) => ev.preventDefault() },
    el('strong', {}, 'Limits'), el('label', {}, 'Queue ', queue),
    el('label', {}, 'At most ', conc, ' running'),
    el('button', { type: 'button', id: 'limits-set-concurrency', onclick: () => send({ set_concurrency_limit: true, concurrency_limit: int(conc) }, 'concurrency limit set') }, 'Set'),
    el('button', { type: 'button', id: 'limits-clear-concurrency', onclick: () => send({ clear_concurrency_limit: true }, 'concurrency limit cleared') }, 'Clear'),
    el('label', {}, rate, ' claims per ', period, ' s'),
    el('button', { type: 'button', id: 'limits-set-rate', onclick: () => send({ set_rate_limit: true, rate_limit: int(rate), rate_period_ms: Math.round((Number.parseFloat(period.value) || 0) * 1000) }, 'rate limit set') }, 'Set'),
    el('button', { type: 'button', id: 'limits-clear-rate', onclick: () => send({ clear_rate_limit: true }, 'rate limit cleared') }, 'Clear'));
}

function jobsTable(jobs, opts) {
  const head = el('tr', {},
    opts.select ? el('th', {}, el('input', { type: 'checkbox', id: 'select-all', 'aria-label': 'select all', onchange: (ev) => {
      for (const j of jobs) { if (ev.target.checked) state.selected.add(j.id); else state.selected.delete(j.id); }
      for (const b of document.querySelectorAll('input[data-select]')) b.checked = ev.target.checked;
      updateBulk();
    } })) : null,
    el('th', {}, 'Job'), el('th', {}, 'Queue'), el('th', {}, 'Status'), el('th', { className: 'num' }, 'Attempts'),
    el('th', { className: 'num' }, 'Priority'), el('th', {}, 'Run at'), el('th', {}, 'Progress'), el('th', {}, 'Last error'),
    opts.actions ? el('th', {}, 'Actions') : null);
  const rows = jobs.map((j) => el('tr', { 'data-row': j.id },
    opts.select ? el('td', {}, el('input', { type: 'checkbox', checked: state.selected.has(j.id), 'data-select': j.id, 'aria-label': 'select job ' + j.id, onchange: (ev) => {
      if (ev.target.checked) state.selected.add(j.id); else state.selected.delete(j.id);
      updateBulk();
    } })) : null,
    el('td', {}, jobLink(j.id)), el('td', {}, j.queue), statusCell(j.status),
    el('td', { className: 'num' }, j.attempts + ' / ' + j.max_attempts), el('td', { className: 'num' }, String(j.priority)),
    el('td', {}, fmtTime(j.run_at_ms)), el('td', { 'data-progress': j.id }, progressText(j)),
    el('td', { className: 'err', title: j.last_error }, j.last_error),
    opts.actions ? el('td', {}, ...actionButtons(j)) : null));
  return el('table', { id: 'jobs' }, el('thead', {}, head), el('tbody', {}, ...rows));
}

// progressText: a processing job's last progress report ("40% resizing"), else empty.
function progressText(j) {
  if (j.status !== 'processing' || !j.progress_at_ms) return '';
  return j.progress_percent + '%' + (j.progress_message ? ' ' + j.progress_message : '');
}

function actionButtons(j) {
  if (!isAdmin()) return [];
  const out = [];
  if (j.status === 'failed' || j.status === 'cancelled')
    out.push(el('button', { type: 'button', 'data-action': 'retry', 'data-id': j.id, onclick: () => act(() => api('jobs/' + j.id + '/retry', {}), 'job ' + j.id + ' back to pending') }, 'Retry'));
  if (j.status === 'pending' || j.status === 'failed' || j.status === 'processing')
    out.push(el('button', { type: 'button', className: 'danger', 'data-action': 'cancel', 'data-id': j.id, onclick: () => act(() => api('jobs/' + j.id + '/cancel', {}), 'job ' + j.id + ' cancelled') }, 'Cancel'));
  return out;
}

// act runs one action, then shows its outcome and renders the view again.
async function act(fn, done) {
  state.busy = true;
  try {
    const r = await fn();
    const failed = r && r.results ? r.results.filter((x) => x.code !== 'OK') : [];
    if (failed.length) setStatus(failed.map((x) => 'job ' + x.id + ': ' + x.code + ' ' + x.message).join('\n'));
    else setStatus(typeof done === 'function' ? done(r) : done, true);
  } catch (e) {
    showError(e);
  } finally {
    state.busy = false;
  }
  await render(true);
}

function filterForm(path, params, withState) {
  const queue = el('input', { type: 'text', id: 'filter-queue', value: params.get('queue') || '', placeholder: 'all queues', 'aria-label': 'queue' });
  const sel = withState ? el('select', { id: 'filter-state', 'aria-label': 'state' }, el('option', { value: '' }, 'all states'),
    ...STATES.map((s) => el('option', { value: s, selected: params.get('state') === s }, s))) : null;
  return el('form', { className: 'toolbar', id: 'filters', onsubmit: (ev) => {
    ev.preventDefault();
    location.hash = hashFor(path, { queue: queue.value.trim(), state: sel ? sel.value : undefined });
  } }, el('label', {}, 'Queue ', queue), sel ? el('label', {}, 'State ', sel) : null, el('button', { type: 'submit' }, 'Show'));
}

// pager: keyset paging. "after" is the last id of the previous page; the trail of earlier
// "after" values (for Previous) rides in the hash too.
function pager(path, params, next) {
  const trail = (params.get('trail') || '').split(',').filter(Boolean);
  const after = params.get('after') || '';
  const base = { queue: params.get('queue'), state: params.get('state') };
  const bar = el('div', { className: 'toolbar' });
  if (after) {
    const prevTrail = trail.slice(0, -1);
    bar.append(el('a', { href: hashFor(path, base), id: 'page-first' }, 'First page'));
    bar.append(el('a', { href: hashFor(path, { ...base, after: trail[trail.length - 1] === '0' ? '' : trail[trail.length - 1], trail: prevTrail.join(',') }), id: 'page-prev' }, 'Previous page'));
  }
  if (next) bar.append(el('a', { href: hashFor(path, { ...base, after: next, trail: [...trail, after || '0'].join(',') }), id: 'page-next' }, 'Next page'));
  return bar;
}

function listQuery(params, stateName) {
  const q = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if (params.get('queue')) q.set('queue', params.get('queue'));
  if (stateName) q.set('state', stateName);
  if (params.get('after')) q.set('after_id', params.get('after'));
  return 'jobs?' + q.toString();
}

async function viewJobs(root, params) {
  const data = await api(listQuery(params, params.get('state')));
  root.append(el('h2', {}, 'Jobs'), filterForm('/jobs', params, true));
  if (data.jobs.length === 0) root.append(el('p', { className: 'muted', id: 'no-jobs' }, 'No jobs here.'));
  else root.append(jobsTable(data.jobs, { actions: true }));
  root.append(pager('/jobs', params, data.next_after_id));
}

function updateBulk() {
  const n = state.selected.size;
  for (const b of document.querySelectorAll('button[data-bulk]')) b.disabled = n === 0;
  const c = document.getElementById('selected-count');
  if (c) c.textContent = n + ' selected';
}

async function viewFailed(root, params) {
  const data = await api(listQuery(params, 'failed'));
  const queue = params.get('queue') || '';
  root.append(el('h2', {}, 'Failed jobs'), filterForm('/failed', params, false));
  // A selection holds only jobs still shown as failed.
  const shown = new Set(data.jobs.map((j) => j.id));
  for (const id of [...state.selected]) if (!shown.has(id)) state.selected.delete(id);
  if (!isAdmin()) {
    root.append(el('p', { className: 'muted', id: 'read-only' }, 'Read only: your role is ' + (state.role || 'unknown') + '; retry and cancel need an admin token.'));
  } else {
    const ids = () => [...state.selected];
    const bar = el('div', { className: 'toolbar', id: 'bulk' },
      el('span', { id: 'selected-count' }, ''),
      el('button', { type: 'button', 'data-bulk': 'retry', id: 'bulk-retry', onclick: () => {
        const list = ids(); state.selected.clear();
        return act(() => api('retry', { ids: list }), (r) => r.retried + ' jobs back to pending');
      } }, 'Retry selected'),
      el('button', { type: 'button', className: 'danger', 'data-bulk': 'cancel', id: 'bulk-cancel', onclick: () => {
        const list = ids(); state.selected.clear();
        return act(() => api('cancel', { ids: list }), list.length + ' jobs cancelled');
      } }, 'Cancel selected'));
    if (queue) {
      bar.append(el('button', { type: 'button', id: 'retry-all', onclick: () => {
        if (!window.confirm('Retry every failed job of queue ' + queue + '?')) return undefined;
        return act(() => api('retry', { queue, all_failed: true }), (r) => r.retried + ' failed jobs of ' + queue + ' back to pending');
      } }, 'Retry all failed jobs of this queue'));
    }
    root.append(bar);
  }
  if (data.jobs.length === 0) root.append(el('p', { className: 'muted', id: 'no-jobs' }, 'No failed jobs.'));
  else root.append(jobsTable(data.jobs, { select: isAdmin(), actions: true }));
  root.append(pager('/failed', params, data.next_after_id));
  updateBulk();
}

async function viewJob(root, id) {
  const data = await api('jobs/' + encodeURIComponent(id));
  const j = data.job;
  root.append(el('h2', {}, 'Job #' + j.id));
  const rows = [
    ['Queue', el('a', { href: hashFor('/jobs', { queue: j.queue }), id: 'job-queue' }, j.queue)],
    ['Status', el('span', { className: 'status-' + j.status, id: 'job-status' }, j.status)],
    ['Attempts', j.attempts + ' of ' + j.max_attempts],
    ['Priority', String(j.priority)],
    ['Run at', fmtTime(j.run_at_ms)],
    ['Lease owner', j.lease_owner || '—'],
    ['Lease expires', j.status === 'processing' ? fmtTime(j.lease_expires_at_ms) : '—'],
    ['Idempotency key', j.idempotency_key || '—'],
    ['Created', fmtTime(j.created_at_ms)],
    ['Updated', fmtTime(j.updated_at_ms)],
    ['Finished', fmtTime(j.finished_at_ms)],
    ['Last error', el('span', { id: 'job-error' }, j.last_error || '—')],
  ];
  if (j.progress_at_ms) {
    rows.push(['Progress', el('span', { id: 'job-progress' },
      el('progress', { max: 100, value: j.progress_percent }), ' ' + j.progress_percent + '%' + (j.progress_message ? ' ' + j.progress_message : ''),
      el('span', { className: 'muted' }, ' (reported ' + fmtTime(j.progress_at_ms) + ')'))]);
  }
  if (j.timeout_ms) rows.push(['Time limit', (j.timeout_ms / 1000) + ' s']);
  root.append(el('dl', {}, ...rows.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)])));
  const actions = actionButtons(j);
  if (actions.length) root.append(el('div', { className: 'toolbar' }, ...actions));
  root.append(el('h3', {}, 'Payload (' + j.payload_bytes + ' bytes)'));
  if (j.payload !== undefined) {
    const shown = j.payload.length > 65536 ? j.payload.slice(0, 65536) + '\n… (cut)' : j.payload;
    root.append(el('pre', { id: 'payload' }, shown));
  } else {
    root.append(el('p', { className: 'muted' }, 'Not text; base64:'), el('pre', { id: 'payload' }, j.payload_base64.slice(0, 65536)));
  }
  if (j.output_bytes) {
    root.append(el('h3', {}, 'Output (' + j.output_bytes + ' bytes)'));
    if (j.output !== undefined) {
      const shown = j.output.length > 65536 ? j.output.slice(0, 65536) + '\n… (cut)' : j.output;
      root.append(el('pre', { id: 'output' }, shown));
    } else {
      root.append(el('p', { className: 'muted' }, 'Not text; base64:'), el('pre', { id: 'output' }, j.output_base64.slice(0, 65536)));
    }
  }
  root.append(el('h3', {}, 'Failure history'));
  if (data.failures.length === 0) {
    root.append(el('p', { className: 'muted', id: 'no-failures' }, 'No failures.'));
  } else {
    root.append(el('table', { id: 'failures' },
      el('thead', {}, el('tr', {}, el('th', { className: 'num' }, 'Attempt'), el('th', {}, 'Worker'), el('th', {}, 'Failed at'), el('th', {}, 'Error'))),
      el('tbody', {}, ...data.failures.map((f) => el('tr', {},
        el('td', { className: 'num' }, String(f.attempt)), el('td', {}, f.worker_id), el('td', {}, fmtTime(f.failed_at_ms)),
        el('td', {}, el('pre', {}, f.error)))))));
  }
}

async function viewSchedules(root) {
  const data = await api('schedules');
  root.append(el('h2', {}, 'Schedules'));
  if (data.schedules.length === 0) {
    root.append(el('p', { className: 'muted', id: 'no-schedules' }, 'No schedules.'));
  } else {
    const head = el('tr', {}, el('th', {}, 'Name'), el('th', {}, 'Cron'), el('th', {}, 'Time zone'), el('th', {}, 'Queue'),
      el('th', {}, 'Next run'), el('th', {}, 'Last run'), el('th', {}, 'Missed ticks'), isAdmin() ? el('th', {}, 'Actions') : null);
    const rows = data.schedules.map((s) => el('tr', { 'data-schedule': s.name },
      el('td', {}, s.name), el('td', {}, el('code', {}, s.cron)), el('td', {}, s.time_zone),
      el('td', {}, el('a', { href: hashFor('/jobs', { queue: s.job.queue }) }, s.job.queue)),
      el('td', { 'data-next': s.name }, fmtTime(s.next_run_at_ms)), el('td', {}, fmtTime(s.last_run_at_ms)),
      el('td', {}, s.missed === 'once' ? 'one job for them all' : 'skipped'),
      isAdmin() ? el('td', {}, el('button', { type: 'button', className: 'danger', 'data-action': 'remove-schedule', 'data-name': s.name, onclick: () => {
        if (!window.confirm('Remove schedule ' + s.name + '?')) return undefined;
        return act(() => api('schedules/remove', { name: s.name }), 'schedule ' + s.name + ' removed');
      } }, 'Remove')) : null));
    root.append(el('table', { id: 'schedules' }, el('thead', {}, head), el('tbody', {}, ...rows)));
  }
  if (isAdmin()) root.append(scheduleForm());
  else root.append(el('p', { className: 'muted', id: 'read-only' }, 'Read only: your role is ' + (state.role || 'unknown') + '; adding and removing schedules needs an admin token.'));
}

// scheduleForm: add a schedule (or replace the one of that name); the service checks the cron
// expression, time zone and job as AddSchedule does.
function scheduleForm() {
  const input = (id, label, placeholder) => el('input', { type: 'text', id, placeholder, 'aria-label': label });
  const name = input('schedule-name', 'name', 'name');
  const cron = input('schedule-cron', 'cron expression', 'min hour dom month dow');
  const zone = input('schedule-zone', 'time zone', 'UTC');
  const queue = input('schedule-queue', 'queue', 'queue');
  const payload = input('schedule-payload', 'payload', 'payload (text)');
  const missed = el('select', { id: 'schedule-missed', 'aria-label': 'missed ticks' },
    el('option', { value: 'skip' }, 'skip missed ticks'), el('option', { value: 'once' }, 'one job for missed ticks'));
  return el('form', { className: 'toolbar', id: 'schedule-add', onsubmit: (ev) => {
    ev.preventDefault();
    const n = name.value.trim();
    return act(() => api('schedules', { name: n, cron: cron.value.trim(), time_zone: zone.value.trim(), missed: missed.value,
      job: { queue: queue.value.trim(), payload: payload.value } }), (r) => 'schedule ' + n + ' added, next run ' + fmtTime(r.schedule.next_run_at_ms));
  } }, el('strong', {}, 'Add'), name, cron, zone, queue, payload, missed, el('button', { type: 'submit', id: 'schedule-submit' }, 'Add schedule'));
}

// ---- routing and refresh ----

async function render(force) {
  if (state.busy && !force) return;
  // A refresh would wipe what is being typed into the filters.
  const focused = document.activeElement;
  if (!force && focused && focused.closest && focused.closest('#filters, #limits, #schedule-add')) return;
  const { path, params } = parseHash();
  const overview = path === '/' || path === '';
  if (!force && overview && Date.now() - state.overviewAt < OVERVIEW_EVERY_MS) return;
  if (overview) state.overviewAt = Date.now();
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('active', a.getAttribute('href') === '#' + (path === '/' ? '/' : path));
  const id = ++state.renderId;
  const view = el('div', { id: 'content' });
  try {
    if (overview) await viewOverview(view);
    else if (path === '/jobs') await viewJobs(view, params);
    else if (path === '/failed') await viewFailed(view, params);
    else if (path === '/schedules') await viewSchedules(view);
    else if (path.startsWith('/job/')) await viewJob(view, path.slice(5));
    else view.append(el('p', {}, 'No such page.'));
  } catch (e) {
    if (id !== state.renderId) return;
    showError(e);
    if (e instanceof ApiError && e.status === 401) document.getElementById('token').focus();
    return;
  }
  if (id !== state.renderId) return; // a newer render started meanwhile
  const main = document.getElementById('view');
  main.replaceChildren(view);
  main.setAttribute('data-rendered', String(id));
  updateBulk();
}

async function whoami() {
  try {
    const r = await api('whoami');
    state.role = r.role;
    document.getElementById('who').textContent = r.auth_required ? 'role: ' + r.role : 'no auth configured (admin)';
    return true;
  } catch (e) {
    state.role = '';
    document.getElementById('who').textContent = 'not signed in';
    showError(e);
    return false;
  }
}

async function start() {
  document.getElementById('auth').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const t = document.getElementById('token');
    if (t.value) sessionStorage.setItem(TOKEN_KEY, t.value.trim());
    t.value = '';
    setStatus('');
    if (await whoami()) await render(true);
  });
  document.getElementById('token-forget').addEventListener('click', async () => {
    sessionStorage.removeItem(TOKEN_KEY);
    state.role = '';
    document.getElementById('view').replaceChildren();
    setStatus('');
    await whoami();
  });
  window.addEventListener('hashchange', () => { setStatus(''); render(true); });
  if (await whoami()) await render(true);
  state.timer = setInterval(() => { if (document.visibilityState === 'visible' && state.role) render(false); }, REFRESH_MS);
}

document.addEventListener('DOMContentLoaded', start);
