// k8s_check.mjs — offline checks of the deploy/k8s kustomize base (run by test_k8s.sh).
//
//   node k8s_check.mjs render KUSTOMIZE_DIR
//       prints the base rendered by a small built-in renderer as JSON (only the kustomize fields
//       the base uses: resources, labels, images; anything else is refused), for machines
//       without kubectl.
//   node k8s_check.mjs check RENDERED [--same-as JSON] [--uid N] [--migrations-dir D]
//                                     [--jobqd-help F] [--worker-help F]
//       RENDERED is kustomize's YAML (or the renderer's JSON). Validates every object against the
//       Kubernetes API schemas (npm kubernetes-models: compiled validators for types, required
//       fields, enums and formats) plus unknown fields (walked from the package's type
//       declarations, since the API schemas allow extra properties), then jobq's own rules.
//
// JOBQ_K8S_VALIDATE_DIR is the npm prefix holding kubernetes-models and yaml (deploy/bootstrap.sh).
// Prints one line per finding; exit 1 if any.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";

const mods = process.env.JOBQ_K8S_VALIDATE_DIR;
if (!mods || !fs.existsSync(path.join(mods, "node_modules/kubernetes-models/package.json"))) {
  console.error("k8s_check: JOBQ_K8S_VALIDATE_DIR does not hold kubernetes-models (run deploy/bootstrap.sh)");
  process.exit(2);
}
const nm = path.join(mods, "node_modules");
const YAML = createRequire(path.join(nm, "x.js"))("yaml");

const problems = [];
const fail = (msg) => problems.push(msg);

// ---------------------------------------------------------------------------------------------
// The fallback renderer.

function render(dir) {
  const k = YAML.parse(fs.readFileSync(path.join(dir, "kustomization.yaml"), "utf8"));
  const known = new Set(["apiVersion", "kind", "resources", "labels", "images"]);
  for (const key of Object.keys(k))
    if (!known.has(key)) throw new Error(`renderer: kustomization field '${key}' is not supported here; use kubectl kustomize`);
  const objs = [];
  for (const r of k.resources || []) {
    const file = path.join(dir, r);
    if (!fs.statSync(file).isFile()) throw new Error(`renderer: resource ${r} is not a file`);
    for (const doc of YAML.parseAllDocuments(fs.readFileSync(file, "utf8"), { version: "1.1" })) {
      if (doc.errors.length) throw new Error(`${r}: ${doc.errors[0].message}`);
      const o = doc.toJS();
      if (o) objs.push(o);
    }
  }
  for (const l of k.labels || []) {
    if (l.includeSelectors || l.includeTemplates) throw new Error("renderer: labels with includeSelectors/includeTemplates not supported");
    for (const o of objs) o.metadata.labels = { ...(o.metadata.labels || {}), ...l.pairs };
  }
  for (const img of k.images || []) {
    for (const o of objs) {
      const spec = podSpec(o);
      if (!spec) continue;
      for (const c of [...(spec.initContainers || []), ...(spec.containers || [])]) {
        const m = /^([^:@]+(?::\d+\/[^:@]+)?)(?::[^@]+)?(@.+)?$/.exec(c.image);
        if (m && m[1] === img.name)
          c.image = (img.newName || img.name) + (img.digest ? "@" + img.digest : img.newTag ? ":" + img.newTag : "");
      }
    }
  }
  return objs;
}

function podSpec(o) {
  if (o.kind === "Pod") return o.spec;
  if (["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"].includes(o.kind)) return o.spec?.template?.spec;
  if (o.kind === "CronJob") return o.spec?.jobTemplate?.spec?.template?.spec;
  return null;
}

// ---------------------------------------------------------------------------------------------
// Schema validation: compiled validators, and unknown fields from the type declarations.

function modelFile(apiVersion, kind, ext) {
  // "v1" -> v1/Kind, "apps/v1" -> apps/v1/Kind, "networking.k8s.io/v1" -> networking.k8s.io/v1/Kind
  return path.join(nm, "kubernetes-models", apiVersion, kind + ext);
}

const ifaceCache = new Map();
// parseIface reads the first interface of a .d.ts file: property name -> {file, array} where file
// is the .d.ts of the property's interface type (null for scalars, maps and aliases).
function parseIface(dts) {
  if (ifaceCache.has(dts)) return ifaceCache.get(dts);
  let res = null;
  if (fs.existsSync(dts)) {
    const text = fs.readFileSync(dts, "utf8");
    const imports = new Map();
    for (const m of text.matchAll(/^import \{ (\w+) \} from "([^"]+)";$/gm)) imports.set(m[1], m[2]);
    const start = text.search(/^export interface \w+( extends [\w, ]+)? \{$/m);
    if (start >= 0) {
      res = new Map();
      const body = text.slice(start).split("\n").slice(1);
      for (const line of body) {
        if (line === "}") break;
        const m = /^ {4}"([^"]+)"\??: (.*?);?$/.exec(line);
        if (!m) continue;
        let t = m[2], array = false;
        const a = /^Array<(\w+)>$/.exec(t);
        if (a) { t = a[1]; array = true; }
        let file = null;
        if (/^I\w+$/.test(t) && imports.has(t)) file = resolveImport(dts, imports.get(t));
        res.set(m[1], { file, array });
      }
    }
  }
  ifaceCache.set(dts, res);
  return res;
}

function resolveImport(from, spec) {
  const rel = spec.replace(/\.js$/, "");
  const cands = spec.startsWith(".")
    ? [path.resolve(path.dirname(from), rel + ".d.ts")]
    : [path.join(nm, rel + ".d.ts"), path.join(nm, "kubernetes-models/node_modules", rel + ".d.ts")];
  return cands.find((c) => fs.existsSync(c)) || null;
}

function unknownFields(value, dts, where) {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return;
  const props = parseIface(dts);
  if (!props) return;
  for (const [k, v] of Object.entries(value)) {
    const p = props.get(k);
    if (!p) { fail(`${where}.${k}: unknown field`); continue; }
    if (!p.file) continue;
    if (p.array && Array.isArray(v)) v.forEach((e, i) => unknownFields(e, p.file, `${where}.${k}[${i}]`));
    else if (!p.array) unknownFields(v, p.file, `${where}.${k}`);
  }
}

async function validateSchema(o) {
  const id = `${o.kind}/${o.metadata?.name}`;
  const js = modelFile(o.apiVersion, o.kind, ".js");
  if (!fs.existsSync(js)) { fail(`${id}: no schema for ${o.apiVersion} ${o.kind}`); return; }
  const mod = await import(pathToFileURL(js).href);
  const Model = mod[o.kind];
  try {
    new Model(o).validate();
  } catch (e) {
    fail(`${id}: schema: ${e.message}`);
  }
  unknownFields(o, modelFile(o.apiVersion, o.kind, ".d.ts"), id);
}

// ---------------------------------------------------------------------------------------------
// jobq's rules.

const matches = (selector, labels) =>
  Object.entries(selector || {}).every(([k, v]) => (labels || {})[k] === v);

function checkJobq(objs, opt) {
  const by = (kind) => objs.filter((o) => o.kind === kind);
  const one = (kind, name) => objs.find((o) => o.kind === kind && o.metadata.name === name);
  const need = (cond, msg) => { if (!cond) fail(msg); };

  need(by("Secret").length === 0, "a Secret is committed in the base: credentials must be created out of band");
  for (const k of ["ConfigMap", "Deployment", "Service", "Job", "PodDisruptionBudget", "NetworkPolicy"])
    need(by(k).length > 0, `no ${k} rendered`);

  const cm = one("ConfigMap", "jobq-config");
  const srv = one("Deployment", "jobqd");
  const wrk = one("Deployment", "jobq-worker");
  const job = one("Job", "jobq-migrate");
  const svc = by("Service")[0];
  if (!cm || !srv || !wrk || !job || !svc) {
    fail("expected ConfigMap jobq-config, Deployments jobqd and jobq-worker, Job jobq-migrate, a Service");
    return;
  }
  const data = cm.data || {};
  const portOf = (s) => Number(/:(\d+)$/.exec(s || "")?.[1]);

  // Every ConfigMap key is a setting jobqd knows.
  if (opt.jobqdHelp) {
    const help = fs.readFileSync(opt.jobqdHelp, "utf8");
    for (const k of Object.keys(data))
      need(new RegExp(`env ${k}\\b`).test(help), `ConfigMap key ${k} is not an environment variable of jobqd --help`);
  }
  for (const k of ["JOBQ_RPC_URL", "JOBQ_PUB_URL", "JOBQ_HTTP_ADDR"])
    need(/^(tcp:\/\/|tls\+tcp:\/\/)?0\.0\.0\.0:\d+$/.test(data[k] || ""), `ConfigMap ${k}=${data[k]}: must listen on 0.0.0.0`);
  need(data.JOBQ_LOG_FORMAT === "json", "ConfigMap JOBQ_LOG_FORMAT must be json");

  // Every pod: non-root, no privilege escalation, read-only root, no capabilities, seccomp,
  // resources, no service account token; every secret and config map it names accounted for.
  const secretKeys = new Set(["url", "listen-url", "jdbc-url", "username", "password"]);
  for (const w of [srv, wrk, job]) {
    const id = `${w.kind}/${w.metadata.name}`;
    const ps = podSpec(w);
    need(ps.automountServiceAccountToken === false, `${id}: automountServiceAccountToken must be false`);
    if (w.kind === "Deployment")
      need(matches(w.spec.selector.matchLabels, w.spec.template.metadata.labels), `${id}: selector does not match its pod labels`);
    for (const c of [...(ps.initContainers || []), ...ps.containers]) {
      const cid = `${id} container ${c.name}`;
      const sc = c.securityContext || {}, psc = ps.securityContext || {};
      need((sc.runAsNonRoot ?? psc.runAsNonRoot) === true, `${cid}: runAsNonRoot must be true`);
      const uid = sc.runAsUser ?? psc.runAsUser;
      need(Number.isInteger(uid) && uid > 0, `${cid}: runAsUser must be a non-zero uid`);
      need((sc.seccompProfile ?? psc.seccompProfile)?.type === "RuntimeDefault", `${cid}: seccompProfile must be RuntimeDefault`);
      need(sc.allowPrivilegeEscalation === false, `${cid}: allowPrivilegeEscalation must be false`);
      need(sc.readOnlyRootFilesystem === true, `${cid}: readOnlyRootFilesystem must be true`);
      need(sc.privileged !== true, `${cid}: must not be privileged`);
      need((sc.capabilities?.drop || []).includes("ALL"), `${cid}: capabilities must drop ALL`);
      need(!(sc.capabilities?.add || []).length, `${cid}: must add no capabilities`);
      for (const r of ["requests", "limits"])
        for (const q of ["cpu", "memory"])
          need(c.resources?.[r]?.[q] !== undefined, `${cid}: resources.${r}.${q} missing`);
      if (opt.uid !== undefined && c.image.startsWith("jobq"))
        need(uid === opt.uid, `${cid}: runAsUser ${uid} is not the image's USER ${opt.uid}`);
      for (const e of c.env || []) {
        const ref = e.valueFrom?.secretKeyRef;
        if (ref) {
          need(ref.name === "jobq-database" || ref.name === "jobq-tls", `${cid}: env ${e.name} names unknown Secret ${ref.name}`);
          need(secretKeys.has(ref.key), `${cid}: env ${e.name} names unknown key ${ref.key} (README documents ${[...secretKeys]})`);
        }
        need(!/PASSWORD|SECRET|TOKEN/.test(e.name) || e.valueFrom, `${cid}: ${e.name} has a literal value`);
      }
      for (const ef of c.envFrom || []) {
        if (ef.configMapRef) need(one("ConfigMap", ef.configMapRef.name), `${cid}: envFrom names missing ConfigMap ${ef.configMapRef.name}`);
        need(!ef.secretRef, `${cid}: use secretKeyRef per key, not envFrom a Secret`);
      }
    }
  }

  // The server.
  const ps = podSpec(srv);
  const c = ps.containers.find((x) => x.name === "jobqd");
  need(srv.spec.replicas === 2, "jobqd: 2 replicas");
  need(c && c.image.startsWith("jobq"), "jobqd: container jobqd with the jobq image");
  if (!c) return;
  const env = Object.fromEntries((c.env || []).map((e) => [e.name, e]));
  need(env.JOBQ_DATABASE_URL?.valueFrom?.secretKeyRef?.name === "jobq-database" &&
       env.JOBQ_DATABASE_URL.valueFrom.secretKeyRef.key === "url", "jobqd: JOBQ_DATABASE_URL from secretKeyRef jobq-database/url");
  need((c.envFrom || []).some((e) => e.configMapRef?.name === "jobq-config"), "jobqd: envFrom jobq-config");
  const cport = (name) => (c.ports || []).find((p) => p.name === name)?.containerPort;
  need(cport("rpc") === portOf(data.JOBQ_RPC_URL), "jobqd: containerPort rpc differs from JOBQ_RPC_URL");
  need(cport("pub") === portOf(data.JOBQ_PUB_URL), "jobqd: containerPort pub differs from JOBQ_PUB_URL");
  need(cport("http") === portOf(data.JOBQ_HTTP_ADDR), "jobqd: containerPort http differs from JOBQ_HTTP_ADDR");
  const probePort = (p) => (typeof p === "string" ? cport(p) : p);
  need(c.readinessProbe?.httpGet?.path === "/readyz" && probePort(c.readinessProbe.httpGet.port) === cport("http"),
       "jobqd: readinessProbe must GET /readyz on the http port");
  need(c.livenessProbe?.httpGet?.path === "/healthz" && probePort(c.livenessProbe.httpGet.port) === cport("http"),
       "jobqd: livenessProbe must GET /healthz on the http port");
  const pre = c.lifecycle?.preStop;
  const sleepS = pre?.sleep?.seconds ?? (pre?.exec?.command?.[0] === "/bin/sleep" ? Number(pre.exec.command[1]) : NaN);
  need(sleepS > 0, "jobqd: preStop must pause (exec /bin/sleep N) for endpoint draining");
  const drainS = Number(data.JOBQ_DEFAULT_DEADLINE_MS || 30000) / 1000;
  need(ps.terminationGracePeriodSeconds > sleepS + drainS,
       `jobqd: terminationGracePeriodSeconds ${ps.terminationGracePeriodSeconds} must exceed preStop ${sleepS} s + drain ${drainS} s`);
  need((ps.topologySpreadConstraints || []).length > 0 || ps.affinity?.podAntiAffinity, "jobqd: topology spread or anti-affinity");
  need(srv.spec.strategy?.rollingUpdate?.maxUnavailable === 0, "jobqd: rolling update with maxUnavailable 0");

  // Service and PDB select exactly the server's pods.
  const srvLabels = ps === podSpec(srv) ? srv.spec.template.metadata.labels : {};
  const others = [wrk, job].map((w) => w.spec.template.metadata.labels);
  need(matches(svc.spec.selector, srvLabels) && !others.some((l) => matches(svc.spec.selector, l)), "Service must select the jobqd pods only");
  for (const [name, port] of [["rpc", cport("rpc")], ["pub", cport("pub")], ["http", cport("http")]]) {
    const sp = svc.spec.ports.find((p) => p.name === name);
    need(sp && (sp.targetPort === name || sp.targetPort === port), `Service: port ${name} must target the container's ${name} port`);
  }
  const pdb = by("PodDisruptionBudget")[0];
  need(pdb && pdb.spec.minAvailable === 1 && matches(pdb.spec.selector.matchLabels, srvLabels) &&
       !others.some((l) => matches(pdb.spec.selector.matchLabels, l)), "PodDisruptionBudget: minAvailable 1 over the jobqd pods only");

  // The worker dials the Service and carries the client label.
  const wc = podSpec(wrk).containers[0];
  const argv = [...(wc.command || []), ...(wc.args || [])];
  const dd = argv.indexOf("--");
  const flags = argv.slice(0, dd < 0 ? argv.length : dd);
  need(argv.includes("worker") && flags.join(" ").includes("--queue default") && flags.join(" ").includes("--concurrency 4") && dd > 0,
       "worker: jobq worker --queue default --concurrency 4 -- COMMAND");
  if (opt.workerHelp) {
    const help = fs.readFileSync(opt.workerHelp, "utf8");
    for (const f of flags.filter((a) => a.startsWith("--")))
      need(help.includes(f.split("=")[0]), `worker: flag ${f} is not in jobq worker --help`);
  }
  const wenv = Object.fromEntries((wc.env || []).map((e) => [e.name, e.value]));
  const svcPort = (n) => svc.spec.ports.find((p) => p.name === n)?.port;
  need(wenv.JOBQ_RPC_URL === `tcp://${svc.metadata.name}:${svcPort("rpc")}`, `worker: JOBQ_RPC_URL must dial the Service (tcp://${svc.metadata.name}:${svcPort("rpc")})`);
  need(wenv.JOBQ_PUB_URL === `tcp://${svc.metadata.name}:${svcPort("pub")}`, `worker: JOBQ_PUB_URL must dial the Service (tcp://${svc.metadata.name}:${svcPort("pub")})`);
  need(!(wc.envFrom || []).length, "worker: must not take jobqd's ConfigMap (its addresses are listen addresses)");

  // The migration Job: the official Liquibase image, the changelog from the jobq image.
  const js = podSpec(job);
  const lb = js.containers.find((x) => x.image.startsWith("liquibase/liquibase:"));
  need(lb && lb.image === "liquibase/liquibase:4.28", "migrate: container with image liquibase/liquibase:4.28");
  if (lb) {
    const a = lb.args || [];
    need(a.includes("update") && a.includes("--changelog-file=changelog.yaml"), "migrate: args --changelog-file=changelog.yaml ... update");
    const sp = a.find((x) => x.startsWith("--search-path="))?.slice(14);
    const mount = (lb.volumeMounts || []).find((m) => m.mountPath === sp);
    need(mount, `migrate: the search path ${sp} is not a mounted volume`);
    const lenv = Object.fromEntries((lb.env || []).map((e) => [e.name, e.valueFrom?.secretKeyRef?.key]));
    need(lenv.LIQUIBASE_COMMAND_URL === "jdbc-url" && lenv.LIQUIBASE_COMMAND_USERNAME === "username" &&
         lenv.LIQUIBASE_COMMAND_PASSWORD === "password", "migrate: url/username/password from the Secret keys jdbc-url/username/password");
    const init = (js.initContainers || []).find((x) => (x.volumeMounts || []).some((m) => mount && m.name === mount.name));
    need(init && init.image.startsWith("jobq") && (!opt.migrationsDir || init.command.join(" ").includes(opt.migrationsDir)),
         `migrate: an init container copying ${opt.migrationsDir} from the jobq image into the changelog volume`);
  }
  need(js.restartPolicy === "Never" || js.restartPolicy === "OnFailure", "migrate: restartPolicy Never/OnFailure");
  // `kubectl apply -k deploy/k8s -l app.kubernetes.io/component=migrate` must bring the Job and its
  // network policy, and nothing that depends on the migrated schema.
  const first = objs.filter((o) => o.metadata.labels?.["app.kubernetes.io/component"] === "migrate").map((o) => `${o.kind}/${o.metadata.name}`).sort();
  need(JSON.stringify(first) === JSON.stringify(["Job/jobq-migrate", "NetworkPolicy/jobq-migrate"]),
       `migrate: the component=migrate selection is ${first}, want the Job and its NetworkPolicy`);

  // Network policies.
  const pols = by("NetworkPolicy");
  const polsFor = (labels) => pols.filter((p) => matches(p.spec.podSelector.matchLabels, labels));
  const egressPorts = (labels) => polsFor(labels).flatMap((p) => (p.spec.egress || []).flatMap((r) => (r.ports || []).map((x) => x.port)));
  const srvPols = polsFor(srvLabels);
  need(srvPols.length > 0 && srvPols.every((p) => p.spec.policyTypes.includes("Ingress") && p.spec.policyTypes.includes("Egress")),
       "NetworkPolicy: jobqd pods need an Ingress+Egress policy");
  const ingress = srvPols.flatMap((p) => p.spec.ingress || []);
  const clientLabels = wrk.spec.template.metadata.labels;
  for (const port of [cport("rpc"), cport("pub")]) {
    const rules = ingress.filter((r) => !r.ports || r.ports.some((x) => x.port === port || x.port === (port === cport("rpc") ? "rpc" : "pub")));
    need(rules.length > 0, `NetworkPolicy: no ingress rule for port ${port}`);
    for (const r of rules) {
      const ok = (r.from || []).length > 0 && r.from.every((f) => !f.ipBlock && !f.namespaceSelector &&
        Object.keys(f.podSelector?.matchLabels || {}).length > 0 && matches(f.podSelector.matchLabels, clientLabels));
      need(ok, `NetworkPolicy: port ${port} must be open only to labelled client pods`);
    }
    need(!ingress.some((r) => r.ports?.some((x) => x.port === port) && (r.from || []).some((f) => f.podSelector && !Object.keys(f.podSelector.matchLabels || {}).length)),
         `NetworkPolicy: port ${port} open to every pod`);
  }
  need(ingress.some((r) => r.ports?.some((x) => x.port === cport("http")) && (r.from || []).some((f) => f.podSelector && !Object.keys(f.podSelector.matchLabels || {}).length)),
       "NetworkPolicy: the http port must be open to the namespace (probes, scraping)");
  const jobLabels = job.spec.template.metadata.labels;
  for (const [who, labels] of [["jobqd", srvLabels], ["migrate", jobLabels]]) {
    need(egressPorts(labels).includes(5432), `NetworkPolicy: ${who} must reach the database (5432)`);
    need(egressPorts(labels).includes(53), `NetworkPolicy: ${who} must reach DNS (53)`);
  }
  for (const p of pols)
    if (!matches(p.spec.podSelector.matchLabels, srvLabels) && !matches(p.spec.podSelector.matchLabels, jobLabels))
      need(!(p.spec.egress || []).some((r) => (r.ports || []).some((x) => x.port === 5432)), `NetworkPolicy ${p.metadata.name}: database egress for pods other than jobqd and the migration Job`);
}

// ---------------------------------------------------------------------------------------------

function loadRendered(file) {
  const text = fs.readFileSync(file, "utf8");
  if (text.trimStart().startsWith("[")) return JSON.parse(text);
  return YAML.parseAllDocuments(text, { version: "1.1" }).map((d) => {
    if (d.errors.length) throw new Error(`${file}: ${d.errors[0].message}`);
    return d.toJS();
  }).filter(Boolean);
}

function canonical(objs) {
  const sortKeys = (v) => Array.isArray(v) ? v.map(sortKeys)
    : v && typeof v === "object" ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, sortKeys(v[k])])) : v;
  return objs.map((o) => JSON.stringify(sortKeys(o))).sort();
}

const [cmd, target, ...rest] = process.argv.slice(2);
const opt = {};
for (let i = 0; i < rest.length; i += 2) opt[rest[i].replace(/^--/, "").replace(/-(\w)/g, (_, x) => x.toUpperCase())] = rest[i + 1];
if (opt.uid !== undefined) opt.uid = Number(opt.uid);

if (cmd === "render") {
  process.stdout.write(JSON.stringify(render(target), null, 1) + "\n");
} else if (cmd === "check") {
  const objs = loadRendered(target);
  if (opt.sameAs) {
    const a = canonical(objs), b = canonical(loadRendered(opt.sameAs));
    if (JSON.stringify(a) !== JSON.stringify(b)) fail("the built-in renderer and kubectl kustomize disagree (fix the renderer or keep the base to resources/labels/images)");
  }
  for (const o of objs) await validateSchema(o);
  checkJobq(objs, opt);
  for (const p of problems) console.log(`FAIL: ${p}`);
  console.log(`k8s_check: ${objs.length} objects (${objs.map((o) => `${o.kind}/${o.metadata.name}`).join(", ")}); ${problems.length} problem(s)`);
  process.exit(problems.length ? 1 : 0);
} else {
  console.error("usage: k8s_check.mjs render DIR | check RENDERED [--same-as F] [--uid N] [--migrations-dir D] [--jobqd-help F] [--worker-help F]");
  process.exit(2);
}
