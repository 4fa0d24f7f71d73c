// console_check.mjs — the console's checks in headless Chromium (run by test_console.sh, which
// starts jobqd and seeds: queue mail with 3 pending jobs, one of them XSS_JOB whose payload is a
// script tag; queue bills with 4 failed jobs, XSS_ERROR_JOB failed with an img-onerror error, and
// 1 pending; queue done with 2 completed jobs, OUTPUT_JOB's output an img-onerror tag; queue run
// with 2 processing jobs, PROGRESS_JOB at 40% "resizing", RUNNING_JOB without progress; queue
// slow with 1 pending job, paused). Each check waits for its condition by re-reading the page (the page refreshes by
// polling), never for a fixed time. On a failure: a screenshot in SHOT_DIR, its path printed,
// exit 1.
import path from "node:path";
import { createRequire } from "node:module";
import { execFileSync } from "node:child_process";

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`console_check: ${k} is not set (run through test_console.sh)`);
  return v;
};
const base = env("CONSOLE_URL");
const admin = env("ADMIN_TOKEN");
const reader = env("READER_TOKEN");
const shotDir = env("SHOT_DIR");
const xssJob = env("XSS_JOB");
const xssErrorJob = env("XSS_ERROR_JOB");
const outputJob = env("OUTPUT_JOB");
const progressJob = env("PROGRESS_JOB");
const runningJob = env("RUNNING_JOB");
const jobqBin = env("JOBQ_BIN"); // the CLI, for a Claim over the RPC (JOBQ_RPC_URL from the caller)
const puppeteer = createRequire(path.join(env("PUPPETEER_DIR"), "node_modules", "x.js"))("puppeteer-core");

const WAIT = { timeout: 30000, polling: 100 }; // above the overview's 10 s refresh
const problems = []; // dialogs, page errors, CSP violations: each one fails the run at the end
let page;
let step = "start";

async function api(pathname, token, body) {
  const res = await fetch(base + "/api/v1/" + pathname, {
    method: body === undefined ? "GET" : "POST",
    headers: { Authorization: "Bearer " + token, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

async function jobStatus(id) {
  const r = await api("jobs/" + id, admin);
  if (r.status !== 200) throw new Error(`GET jobs/${id}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body.job.status;
}

async function countsOf(queue) {
  const r = await api("queues?queue=" + queue, admin);
  return r.body.queues[0];
}

function ok(msg) { console.log("ok: " + msg); }

function watch(p) {
  p.on("dialog", async (d) => {
    // The console asks confirm() before "retry all"; any other dialog is a script that ran.
    if (d.type() === "confirm" && /^(Retry every failed job|Remove schedule)/.test(d.message())) {
      await d.accept();
      return;
    }
    problems.push(`a ${d.type()} dialog opened: ${d.message()}`);
    await d.dismiss();
  });
  p.on("pageerror", (e) => problems.push("page error: " + e.message));
  p.on("console", (m) => {
    if (m.type() === "error" && /Content Security Policy|Refused to/i.test(m.text())) problems.push("console: " + m.text());
  });
}

async function signIn(token) {
  await page.goto(base + "/#/", { waitUntil: "domcontentloaded" });
  await page.evaluate(() => sessionStorage.clear());
  await page.reload({ waitUntil: "domcontentloaded" });
  await page.type("#token", token);
  await page.click("#token-use");
}

async function go(hash) {
  await page.evaluate((h) => { location.hash = h; }, hash);
}

// textOf: the text of the first element matching sel, or null.
const textOf = (sel) => page.evaluate((s) => { const e = document.querySelector(s); return e ? e.textContent : null; }, sel);

async function checks(browser) {
  page = await browser.newPage();
  await page.setViewport({ width: 1200, height: 760 });
  watch(page);

  step = "the page's headers";
  const res = await page.goto(base + "/", { waitUntil: "domcontentloaded" });
  const csp = res.headers()["content-security-policy"] || "";
  for (const want of ["default-src 'none'", "script-src 'self'", "frame-ancestors 'none'"])
    if (!csp.includes(want)) throw new Error(`Content-Security-Policy lacks ${want}: ${csp}`);
  if (res.headers()["x-content-type-options"] !== "nosniff") throw new Error("no X-Content-Type-Options: nosniff");
  ok("strict Content-Security-Policy, nosniff");

  step = "overview counts";
  await signIn(admin);
  await page.waitForFunction(() => document.querySelector("#who").textContent === "role: admin", WAIT);
  const cell = (q, k) => `tr[data-queue="${q}"] td[data-count="${k}"]`;
  await page.waitForFunction((sel) => {
    const t = (s) => { const e = document.querySelector(s); return e ? e.textContent : null; };
    return t(sel[0]) === "3" && t(sel[1]) === "4" && t(sel[2]) === "1" && t(sel[3]) === "0";
  }, WAIT, [cell("mail", "pending"), cell("bills", "failed"), cell("bills", "pending"), cell("mail", "failed")]);
  ok("overview: mail 3 pending, bills 4 failed and 1 pending");

  step = "chart of completed jobs";
  await page.waitForFunction(() => document.querySelectorAll("#throughput rect.bar").length === 60 &&
    document.querySelector("#throughput-total")?.textContent === "2", WAIT);
  const tallest = await page.$$eval("#throughput rect.bar", (bars) => Math.max(...bars.map((b) => Number(b.getAttribute("height")))));
  if (!(tallest > 0)) throw new Error("the chart draws no bar for the 2 completed jobs");
  ok("chart: 60 minutes, the 2 completed jobs drawn");

  step = "counts follow new jobs (polling)";
  await api("jobs", admin, { jobs: [{ queue: "mail", payload: "late" }, { queue: "mail", payload: "later" }] });
  await page.waitForFunction((sel) => document.querySelector(sel)?.textContent === "5", WAIT, cell("mail", "pending"));
  ok("overview: two jobs enqueued over the API show without a reload");

  step = "a paused queue shows paused";
  const flow = (q, k) => `tr[data-queue="${q}"] td[data-flow="${k}"]`;
  await page.waitForFunction((sel) => document.querySelector(sel)?.textContent === "paused", WAIT, flow("slow", "paused"));
  if ((await textOf(flow("mail", "paused"))) !== "running") throw new Error("mail is not shown running");
  await page.waitForSelector('button[data-action="resume"][data-queue="slow"]', WAIT);
  ok("overview: slow shows paused with a Resume button, mail running");

  step = "pause from the page stops claims";
  await page.click('button[data-action="pause"][data-queue="mail"]');
  await page.waitForFunction((sel) => document.querySelector(sel)?.textContent === "paused" && /queue mail paused/.test(document.querySelector("#status").textContent), WAIT, flow("mail", "paused"));
  if ((await countsOf("mail")).paused !== true) throw new Error("Stats does not show mail paused after Pause on the page");
  const claimed = execFileSync(jobqBin, ["claim", "--queue", "mail", "--limit", "5", "--json"], { env: { ...process.env, JOBQ_AUTH_TOKEN: admin }, encoding: "utf8" });
  if (/"id"/.test(claimed)) throw new Error("a Claim of the paused queue got jobs: " + claimed);
  await page.click('button[data-action="resume"][data-queue="mail"]');
  await page.waitForFunction((sel) => document.querySelector(sel)?.textContent === "running", WAIT, flow("mail", "paused"));
  if ((await countsOf("mail")).paused !== false) throw new Error("Stats shows mail paused after Resume on the page");
  ok("Pause on the page: Stats says mail is paused and a Claim gets none of its jobs; Resume undoes it");

  step = "limits set and cleared from the page";
  await page.type("#limits-queue", "mail");
  await page.type("#limits-concurrency", "2");
  await page.click("#limits-set-concurrency");
  await page.waitForFunction((sel) => document.querySelector(sel)?.textContent === "at most 2 running", WAIT, flow("mail", "limits"));
  if ((await countsOf("mail")).concurrency_limit !== 2) throw new Error("Stats has no concurrency limit 2 on mail");
  await page.type("#limits-queue", "mail");
  await page.type("#limits-rate", "5");
  await page.type("#limits-period", "60");
  await page.click("#limits-set-rate");
  await page.waitForFunction((sel) => document.querySelector(sel)?.textContent === "at most 2 running; 5 claims per 1 min", WAIT, flow("mail", "limits"));
  await page.type("#limits-queue", "mail");
  await page.click("#limits-clear-concurrency");
  await page.waitForFunction((sel) => document.querySelector(sel)?.textContent === "5 claims per 1 min", WAIT, flow("mail", "limits"));
  await page.type("#limits-queue", "mail");
  await page.click("#limits-clear-rate");
  await page.waitForFunction((sel) => document.querySelector(sel)?.textContent === "none", WAIT, flow("mail", "limits"));
  const lim = await countsOf("mail");
  if (lim.concurrency_limit !== undefined || lim.rate_limit !== undefined) throw new Error(`mail keeps limits: ${JSON.stringify(lim)}`);
  ok("limits: a concurrency and a rate limit set and cleared from the overview, as Stats shows");

  step = "progress of a running job";
  await go("#/jobs?queue=run&state=processing");
  await page.waitForFunction((id) => document.querySelector(`td[data-progress="${id}"]`)?.textContent === "40% resizing", WAIT, progressJob);
  if ((await textOf(`td[data-progress="${runningJob}"]`)) !== "") throw new Error("a job without progress shows some");
  await go(`#/job/${progressJob}`);
  await page.waitForFunction(() => /^40% resizing/.test(document.querySelector("#job-progress")?.textContent.trim() || ""), WAIT);
  ok("progress: 40% resizing in the jobs list and on the job's page");

  step = "output shown as text";
  await go(`#/job/${outputJob}`);
  await page.waitForFunction(() => document.querySelector("#output") !== null, WAIT);
  const output = await textOf("#output");
  if (output !== "<img src=x onerror=alert(1)>") throw new Error(`output shown as ${JSON.stringify(output)}`);
  if (await page.$("#view img")) throw new Error("an img element was made from the output");
  ok("an <img onerror> output is shown as text and makes no element");

  step = "cancel a processing job from the page";
  await go(`#/job/${runningJob}`);
  await page.waitForSelector(`button[data-action="cancel"][data-id="${runningJob}"]`, WAIT);
  await page.click(`button[data-action="cancel"][data-id="${runningJob}"]`);
  await page.waitForFunction(() => document.querySelector("#job-status")?.textContent === "cancelled", WAIT);
  if ((await jobStatus(runningJob)) !== "cancelled") throw new Error("the running job cancelled from the page is not cancelled");
  ok("Cancel on a processing job: it ends cancelled");

  step = "add a schedule from the page";
  await go("#/schedules");
  await page.waitForFunction(() => document.querySelector("#no-schedules") && document.querySelector("#schedule-add"), WAIT);
  await page.type("#schedule-name", "hourly");
  await page.type("#schedule-cron", "0 * * * *");
  await page.type("#schedule-queue", "reports");
  await page.type("#schedule-payload", "<img src=x onerror=alert(1)>");
  await page.click("#schedule-submit");
  await page.waitForFunction(() => /^\d{4}-/.test(document.querySelector('td[data-next="hourly"]')?.textContent || ""), WAIT);
  const listed = (await api("schedules?payload=true", admin)).body.schedules;
  if (listed.length !== 1 || listed[0].cron !== "0 * * * *" || listed[0].job.payload !== "<img src=x onerror=alert(1)>" || !(listed[0].next_run_at_ms > Date.now()))
    throw new Error("the schedule added from the page: " + JSON.stringify(listed));
  ok("schedule added from the page: listed with its next run time, as ListSchedules has it");

  step = "markup payload shown as text";
  await go(`#/job/${xssJob}`);
  await page.waitForFunction(() => document.querySelector("#payload") !== null, WAIT);
  const payload = await textOf("#payload");
  if (payload !== "<script>alert(1)</script>") throw new Error(`payload shown as ${JSON.stringify(payload)}`);
  if (await page.$("#view script")) throw new Error("a script element was made from the payload");
  ok("a <script> payload is shown as text and makes no element");

  step = "markup error shown as text";
  await go(`#/job/${xssErrorJob}`);
  await page.waitForFunction(() => document.querySelector("#job-error")?.textContent.startsWith("<img"), WAIT);
  if (await page.$("#view img")) throw new Error("an img element was made from the error text");
  const failure = await page.evaluate(() => document.querySelector("#failures pre")?.textContent);
  if (failure !== "<img src=x onerror=alert(1)>") throw new Error(`failure history shows ${JSON.stringify(failure)}`);
  ok("an <img onerror> error is shown as text, in the job and its failure history");

  step = "retry one failed job from the page";
  await go("#/failed?queue=bills");
  await page.waitForSelector(`button[data-action="retry"][data-id="${xssErrorJob}"]`, WAIT);
  await page.click(`button[data-action="retry"][data-id="${xssErrorJob}"]`);
  await page.waitForFunction((id) => !document.querySelector(`tr[data-row="${id}"]`) && /back to pending/.test(document.querySelector("#status").textContent), WAIT, xssErrorJob);
  if ((await jobStatus(xssErrorJob)) !== "pending") throw new Error("the retried job is not pending");
  ok("Retry on a failed job: it leaves the failed list and is pending");

  step = "reader sees no action and cannot act";
  const failedBefore = (await countsOf("bills")).failed;
  await signIn(reader);
  await page.waitForFunction(() => document.querySelector("#who").textContent === "role: reader", WAIT);
  await go("#/failed?queue=bills");
  await page.waitForFunction(() => document.querySelector("#read-only") && document.querySelectorAll("tr[data-row]").length === 3, WAIT);
  if (await page.$("button[data-action], button[data-bulk], #retry-all")) throw new Error("a reader is shown action buttons");
  const ids = await page.$$eval("tr[data-row]", (rows) => rows.map((r) => Number(r.getAttribute("data-row"))));
  // What the page would send, from the page (the reader's token in its sessionStorage).
  const answer = await page.evaluate(async (list) => {
    const r = await fetch("/api/v1/retry", { method: "POST", headers: { Authorization: "Bearer " + sessionStorage.getItem("jobq.console.token"), "Content-Type": "application/json" }, body: JSON.stringify({ ids: list }) });
    return { status: r.status, body: await r.json() };
  }, ids);
  if (answer.status !== 403 || answer.body.code !== "PERMISSION_DENIED") throw new Error(`a reader's retry answered ${answer.status} ${JSON.stringify(answer.body)}`);
  if ((await countsOf("bills")).failed !== failedBefore) throw new Error("a reader's retry changed the failed count");
  ok("reader: no buttons; its retry answers 403 PERMISSION_DENIED and nothing changes");

  step = "reader cannot resume a paused queue";
  await go("#/");
  await page.waitForFunction((sel) => document.querySelector(sel)?.textContent === "paused", WAIT, flow("slow", "paused"));
  if (await page.$("#view button, #limits")) throw new Error("a reader is shown queue actions");
  const resume = await page.evaluate(async () => {
    const r = await fetch("/api/v1/queues/resume", { method: "POST", headers: { Authorization: "Bearer " + sessionStorage.getItem("jobq.console.token"), "Content-Type": "application/json" }, body: JSON.stringify({ queue: "slow" }) });
    return { status: r.status, body: await r.json() };
  });
  if (resume.status !== 403 || resume.body.code !== "PERMISSION_DENIED") throw new Error(`a reader's resume answered ${resume.status} ${JSON.stringify(resume.body)}`);
  if ((await countsOf("slow")).paused !== true) throw new Error("a reader's resume resumed slow");
  await go(`#/job/${progressJob}`);
  await page.waitForFunction(() => document.querySelector("#job-progress") !== null, WAIT);
  if (await page.$("#view button")) throw new Error("a reader is shown a cancel button on a running job");
  await go("#/schedules");
  await page.waitForFunction(() => document.querySelector('tr[data-schedule="hourly"]') && document.querySelector("#read-only"), WAIT);
  if (await page.$("#view button, #schedule-add")) throw new Error("a reader is shown schedule actions");
  const rm = await page.evaluate(async () => {
    const r = await fetch("/api/v1/schedules/remove", { method: "POST", headers: { Authorization: "Bearer " + sessionStorage.getItem("jobq.console.token"), "Content-Type": "application/json" }, body: JSON.stringify({ name: "hourly" }) });
    return { status: r.status, body: await r.json() };
  });
  if (rm.status !== 403 || rm.body.code !== "PERMISSION_DENIED") throw new Error(`a reader's schedule remove answered ${rm.status} ${JSON.stringify(rm.body)}`);
  if ((await api("schedules", admin)).body.schedules.length !== 1) throw new Error("a reader's remove removed the schedule");
  ok("reader: slow shown paused with no Resume; its resume answers 403 and slow stays paused; no cancel on a running job; schedules without actions, its remove answers 403 and changes nothing");

  step = "bulk retry of the selected jobs";
  await signIn(admin);
  await page.waitForFunction(() => document.querySelector("#who").textContent === "role: admin", WAIT);
  await go("#/failed?queue=bills");
  await page.waitForFunction(() => document.querySelectorAll("input[data-select]").length === 3, WAIT);
  const pick = await page.$$eval("input[data-select]", (list) => list.slice(0, 2).map((e) => e.getAttribute("data-select")));
  // By selector, not by handle: a refresh may have drawn the table anew meanwhile.
  for (const id of pick) await page.click(`input[data-select="${id}"]`);
  await page.waitForFunction(() => document.querySelector("#selected-count")?.textContent === "2 selected", WAIT);
  await page.click("#bulk-retry");
  await page.waitForFunction(() => document.querySelectorAll("tr[data-row]").length === 1 && /2 jobs back to pending/.test(document.querySelector("#status").textContent), WAIT);
  const b = await countsOf("bills");
  if (b.failed !== 1 || b.pending !== 4) throw new Error(`after bulk retry bills has ${b.failed} failed, ${b.pending} pending`);
  ok("bulk retry: the 2 selected jobs are pending, the other stays failed");

  step = "bulk cancel";
  await page.click("#select-all");
  await page.click("#bulk-cancel");
  await page.waitForFunction(() => document.querySelector("#no-jobs") !== null, WAIT);
  const c = await countsOf("bills");
  if (c.failed !== 0 || c.cancelled !== 1) throw new Error(`after bulk cancel bills has ${c.failed} failed, ${c.cancelled} cancelled`);
  ok("bulk cancel: the last failed job is cancelled");

  step = "remove a schedule from the page";
  await go("#/schedules");
  await page.waitForSelector('button[data-action="remove-schedule"][data-name="hourly"]', WAIT);
  await page.click('button[data-action="remove-schedule"][data-name="hourly"]');
  await page.waitForFunction(() => document.querySelector("#no-schedules") !== null, WAIT);
  if ((await api("schedules", admin)).body.schedules.length !== 0) throw new Error("the schedule removed from the page is still listed");
  ok("schedule removed from the page");

  step = "jobs list pages by keyset";
  await api("jobs", admin, { jobs: Array.from({ length: 60 }, (_, i) => ({ queue: "pages", payload: "p" + i })) });
  await go("#/jobs?queue=pages");
  await page.waitForFunction(() => document.querySelectorAll("tr[data-row]").length === 50 && document.querySelector("#page-next"), WAIT);
  await page.click("#page-next");
  await page.waitForFunction(() => document.querySelectorAll("tr[data-row]").length === 10 && !document.querySelector("#page-next"), WAIT);
  await page.click("#page-prev");
  await page.waitForFunction(() => document.querySelectorAll("tr[data-row]").length === 50, WAIT);
  ok("jobs list: 60 jobs in pages of 50 and 10, next and previous");

  if (process.env.JOBQ_CONSOLE_SCREENSHOT) {
    await page.setViewport({ width: 1000, height: 700 });
    await go("#/");
    await page.waitForFunction((sel) => document.querySelector(sel) !== null, WAIT, cell("pages", "pending"));
    await page.screenshot({ path: process.env.JOBQ_CONSOLE_SCREENSHOT });
    ok("overview saved to " + process.env.JOBQ_CONSOLE_SCREENSHOT);
  }

  step = "no dialog, page error or CSP violation";
  if (problems.length) throw new Error(problems.join("\n"));
  ok("no dialog opened, no page error, no CSP violation");
}

const browser = await puppeteer.launch({
  executablePath: env("CHROMIUM"),
  headless: true,
  // Root in a container has no user namespace for Chromium's sandbox.
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"],
});
let failed = false;
try {
  await checks(browser);
} catch (e) {
  failed = true;
  console.log(`FAIL: ${step}: ${e.message}`);
  if (problems.length) console.log("also: " + problems.join("\n"));
  if (page) {
    const file = path.join(shotDir, "fail-" + step.replace(/[^a-z0-9]+/gi, "-") + ".png");
    try {
      await page.screenshot({ path: file, fullPage: true });
      console.log("screenshot: " + file);
    } catch (e2) {
      console.log("no screenshot: " + e2.message);
    }
  }
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
