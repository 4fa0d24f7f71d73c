// k8s_check.mjs — offline checks of the deploy/k8s kustomize base (run by test_k8s.sh).
//
//   node k8s_check.mjs render KUSTOMIZE_DIR
//       prints the kustomization rendered by a small built-in renderer as JSON (only the kustomize
//       fields the base and make-secrets.sh's kustomization use: resources, labels, images,
//       namespace, secretGenerator with fixed names; anything else is refused), for machines
//       without kubectl.
//   node k8s_check.mjs check RENDERED [--same-as JSON] [--uid N] [--migrations-dir D]
//                                     [--jobqd-help F] [--worker-help F] [--secure yes|no]
//       RENDERED is kustomize's YAML (or the renderer's JSON). Validates every object against the
//       Kubernetes API schemas (npm kubernetes-models: compiled validators for types, required
//       fields, enums and formats) plus unknown fields (walked from the package's type
//       declarations, since the API schemas allow extra properties), then jobq's own rules.
//       --secure yes (the base): TLS and credentials must both be on. --secure no (a development
//       overlay): each may be off, but then every object it changes must say so in a
//       jobq/insecure-* annotation, and what stays on must still be complete.
//   node k8s_check.mjs secrets SECRETS_RENDERED --base RENDERED [--same-as JSON]
//       the Secrets of make-secrets.sh's kustomization against what the base mounts.
//   node k8s_check.mjs materialize RENDERED SECRETS_RENDERED KIND/NAME CONTAINER OUTDIR PREFIX
//       does what the kubelet does for one container: writes its Secret volumes under
//       OUTDIR/<mountPath> (the kubelet's ..data layout, modes, fsGroup), and OUTDIR/env and
//       OUTDIR/argv (NUL-separated): the container's environment from its ConfigMap and literal
//       values (secretKeyRef values are left to the caller), with paths under a mount prefixed
//       by PREFIX (where OUTDIR is, as the process will see it), and its command and args.
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
  const known = new Set(["apiVersion", "kind", "resources", "labels", "images", "namespace", "generatorOptions", "secretGenerator"]);
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
  objs.push(...generateSecrets(dir, k));
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
  if (k.namespace) for (const o of objs) o.metadata.namespace = k.namespace;
  return objs;
}

// generateSecrets: secretGenerator entries with `files` (KEY=FILE or FILE) under fixed names.
function generateSecrets(dir, k) {
  const g = k.generatorOptions || {};
  for (const key of Object.keys(g))
    if (!["disableNameSuffixHash", "labels"].includes(key)) throw new Error(`renderer: generatorOptions.${key} not supported`);
  if ((k.secretGenerator || []).length && g.disableNameSuffixHash !== true)
    throw new Error("renderer: secretGenerator needs generatorOptions.disableNameSuffixHash: true here (no name hashes)");
  return (k.secretGenerator || []).map((sg) => {
    for (const key of Object.keys(sg))
      if (!["name", "type", "files"].includes(key)) throw new Error(`renderer: secretGenerator field '${key}' not supported`);
    const data = {};
    for (const f of sg.files || []) {
      const eq = f.indexOf("=");
      const [key, file] = eq < 0 ? [path.basename(f), f] : [f.slice(0, eq), f.slice(eq + 1)];
      data[key] = fs.readFileSync(path.join(dir, file)).toString("base64");
    }
    const metadata = { name: sg.name, ...(g.labels ? { labels: { ...g.labels } } : {}) };
    return { apiVersion: "v1", kind: "Secret", metadata, type: sg.type || "Opaque", data };
  });
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
          need(ref.name === "jobq-database", `${cid}: env ${e.name} names Secret ${ref.name}: only jobq-database goes into the environment (tokens and keys are mounted files)`);
          need(secretKeys.has(ref.key), `${cid}: env ${e.name} names unknown key ${ref.key} (README documents ${[...secretKeys]})`);
        }
        // A *_FILE variable holds a path, which is no secret.
        need(!/PASSWORD|SECRET|TOKEN/.test(e.name) || e.valueFrom || (/_FILE$/.test(e.name) && /^\//.test(e.value || "")),
             `${cid}: ${e.name} has a literal value`);
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
  // The worker dials with the scheme jobqd listens with; PUB is behind the same TLS as RPC.
  const scheme = (u) => /^([a-z+]+):\/\//.exec(u || "")?.[1] || "tcp";
  need(scheme(data.JOBQ_RPC_URL) === scheme(data.JOBQ_PUB_URL), `ConfigMap: RPC (${data.JOBQ_RPC_URL}) and PUB (${data.JOBQ_PUB_URL}) must use the same transport`);
  for (const [k, port] of [["JOBQ_RPC_URL", "rpc"], ["JOBQ_PUB_URL", "pub"]]) {
    const want = `${scheme(data[k])}://${svc.metadata.name}:${svcPort(port)}`;
    need(wenv[k] === want, `worker: ${k} must dial the Service as jobqd listens (${want}), not ${wenv[k]}`);
  }
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
  for (const r of ingress.filter((x) => x.ports?.some((p) => p.port === cport("http"))))
    for (const f of r.from || [])
      need(!f.ipBlock && !(f.namespaceSelector && !Object.keys(f.namespaceSelector.matchLabels || {}).length),
           "NetworkPolicy: the http port must not be open to every namespace or an address block");
  const jobLabels = job.spec.template.metadata.labels;
  for (const [who, labels] of [["jobqd", srvLabels], ["migrate", jobLabels]]) {
    need(egressPorts(labels).includes(5432), `NetworkPolicy: ${who} must reach the database (5432)`);
    need(egressPorts(labels).includes(53), `NetworkPolicy: ${who} must reach DNS (53)`);
  }
  for (const p of pols)
    if (!matches(p.spec.podSelector.matchLabels, srvLabels) && !matches(p.spec.podSelector.matchLabels, jobLabels))
      need(!(p.spec.egress || []).some((r) => (r.ports || []).some((x) => x.port === 5432)), `NetworkPolicy ${p.metadata.name}: database egress for pods other than jobqd and the migration Job`);

  checkAccess({ objs, cm, srv, wrk, job, secure: opt.secure !== "no", need });
}

// ---------------------------------------------------------------------------------------------
// TLS and credentials: what the base turns on, and what a development overlay may turn off.

const ROLES = ["producer", "worker", "reader", "admin"];
const TLS_KEYS = { JOBQ_TLS_CERT: "tls.crt", JOBQ_TLS_KEY: "tls.key", JOBQ_TLS_CA: "ca.crt" };
const KNOWN_SECRETS = new Set(["jobq-database", "jobq-tls", "jobq-tls-worker", ...ROLES.map((r) => `jobq-token-${r}`)]);
const INSECURE = { tls: "jobq/insecure-no-tls", credentials: "jobq/insecure-no-credentials" };

// secretSources: every Secret a pod spec reads, as {name, keys (null = all), optional, where}.
function secretSources(ps) {
  const out = [];
  for (const v of ps.volumes || []) {
    if (v.secret) out.push({ name: v.secret.secretName, keys: v.secret.items?.map((i) => i.key) ?? null, optional: v.secret.optional === true, where: `volume ${v.name}` });
    for (const src of v.projected?.sources || [])
      if (src.secret) out.push({ name: src.secret.name, keys: src.secret.items?.map((i) => i.key) ?? null, optional: src.secret.optional === true, where: `volume ${v.name}` });
  }
  for (const c of [...(ps.initContainers || []), ...ps.containers]) {
    for (const e of c.env || [])
      if (e.valueFrom?.secretKeyRef) out.push({ name: e.valueFrom.secretKeyRef.name, keys: [e.valueFrom.secretKeyRef.key], optional: e.valueFrom.secretKeyRef.optional === true, where: `env ${e.name}` });
    for (const ef of c.envFrom || [])
      if (ef.secretRef) out.push({ name: ef.secretRef.name, keys: null, optional: ef.secretRef.optional === true, where: "envFrom" });
  }
  return out;
}

// fileOf: where a path in the container comes from: {mount, volume, file (path inside it)}.
function fileOf(ps, c, p) {
  for (const m of c.volumeMounts || []) {
    const base = m.mountPath.replace(/\/$/, "");
    if (p === base || p.startsWith(base + "/"))
      return { mount: m, volume: (ps.volumes || []).find((v) => v.name === m.name), file: p.slice(base.length + 1) };
  }
  return null;
}

// secretFile: the Secret key that a mounted file shows, or null.
function secretFile(vol, file) {
  const s = vol?.secret;
  if (!s) return null;
  const it = s.items ? s.items.find((i) => i.path === file) : { key: file };
  return it ? { secret: s.secretName, key: it.key, optional: s.optional === true } : null;
}

// modeOk: a Secret file readable by the pod's group at most, writable by nobody.
const modeOk = (m) => m === undefined ? false : (m & 0o337) === 0;

function checkAccess({ objs, cm, srv, wrk, job, secure, need }) {
  const data = cm.data || {};
  const ps = podSpec(srv), wps = podSpec(wrk);
  const c = ps.containers.find((x) => x.name === "jobqd");
  const wc = wps.containers[0];
  if (!c || !wc) return;
  const wenv = Object.fromEntries((wc.env || []).map((e) => [e.name, e]));
  const tlsOn = /^tls\+tcp:\/\//.test(data.JOBQ_RPC_URL || "");
  const credsOn = data.JOBQ_CREDENTIALS_FILE !== undefined;
  const annotated = (o, key) => o.metadata.annotations?.[key] !== undefined;

  // Every Secret any pod reads is one the README and make-secrets.sh know; the worker's are its own.
  for (const w of [srv, wrk, job])
    for (const src of secretSources(podSpec(w)))
      need(KNOWN_SECRETS.has(src.name), `${w.metadata.name}: ${src.where} reads Secret ${src.name}, which nothing creates`);
  for (const src of secretSources(wps))
    need(src.name === "jobq-token-worker" || src.name === "jobq-tls-worker",
         `worker: ${src.where} reads Secret ${src.name}: a worker holds the worker credential and nothing else`);
  for (const src of secretSources(podSpec(job)))
    need(src.name === "jobq-database", `migrate: ${src.where} reads Secret ${src.name}`);
  // A secret file is read by its pod's group only: fsGroup makes the kubelet give it that group.
  for (const w of [srv, wrk]) {
    const p = podSpec(w);
    for (const v of p.volumes || []) {
      const mode = v.secret ? v.secret.defaultMode : v.projected ? v.projected.defaultMode : null;
      if (mode === null) continue;
      need(modeOk(mode), `${w.metadata.name}: volume ${v.name} defaultMode ${mode?.toString(8)}: at most 0440 (no access for other users)`);
      need(Number.isInteger(p.securityContext?.fsGroup), `${w.metadata.name}: mounts Secret volume ${v.name} without fsGroup: the non-root user could not read mode 0440 files`);
      for (const m of p.containers.flatMap((x) => x.volumeMounts || []).filter((x) => x.name === v.name)) {
        need(m.readOnly === true, `${w.metadata.name}: Secret volume ${v.name} must be mounted readOnly`);
        need(!m.subPath, `${w.metadata.name}: Secret volume ${v.name} mounted with subPath, which never sees a rotation`);
      }
    }
  }
  // No way around a credential: no admin token in the manifests, no role for a bare certificate.
  for (const k of ["JOBQ_AUTH_TOKEN", "JOBQ_AUTH_TOKEN_FILE", "JOBQ_TLS_CLIENT_ROLE"])
    need(data[k] === undefined && !(c.env || []).some((e) => e.name === k),
         `jobqd: ${k} must not be set (every credential comes from the role Secrets; a certificate alone grants no role)`);
  need(wenv.JOBQ_AUTH_TOKEN === undefined, "worker: JOBQ_AUTH_TOKEN must not be set (the token is a mounted file)");
  // The operator's console (an HTTP port with admin actions) stays off unless an overlay asks.
  const consoleOff = (v) => v === undefined || v === "" || v === "off";
  need(consoleOff(data.JOBQ_CONSOLE_ADDR) && !(c.env || []).some((e) => e.name === "JOBQ_CONSOLE_ADDR" && !consoleOff(e.value)) &&
       !(c.args || []).some((a) => a.startsWith("--console-addr")),
       "jobqd: the console stays off in the base (JOBQ_CONSOLE_ADDR / --console-addr not set)");

  if (secure) {
    need(tlsOn, `ConfigMap JOBQ_RPC_URL=${data.JOBQ_RPC_URL}: the base must listen with TLS (tls+tcp://)`);
    need(credsOn, "ConfigMap: the base must set JOBQ_CREDENTIALS_FILE (credentials on)");
  }

  // TLS: jobqd's certificate, key and CA (mutual TLS) from jobq-tls; the worker's from jobq-tls-worker.
  if (tlsOn) {
    need(/^tls\+tcp:\/\//.test(data.JOBQ_PUB_URL || ""), "ConfigMap: PUB must be behind the same TLS as RPC");
    for (const [k, key] of Object.entries(TLS_KEYS)) {
      const f = data[k] && fileOf(ps, c, data[k]);
      const sf = f && secretFile(f.volume, f.file);
      need(sf && sf.secret === "jobq-tls" && sf.key === key && !sf.optional,
           `jobqd: ${k}=${data[k]} must be key ${key} of the Secret jobq-tls, mounted (not optional)`);
      const wf = wenv[k]?.value && fileOf(wps, wc, wenv[k].value);
      const wsf = wf && secretFile(wf.volume, wf.file);
      need(wsf && wsf.secret === "jobq-tls-worker" && wsf.key === key && !wsf.optional,
           `worker: ${k}=${wenv[k]?.value} must be key ${key} of the Secret jobq-tls-worker, mounted (not optional)`);
    }
  } else {
    for (const k of Object.keys(TLS_KEYS)) {
      need(data[k] === undefined, `ConfigMap: ${k} is set but TLS is off`);
      need(wenv[k] === undefined, `worker: ${k} is set but TLS is off`);
    }
    for (const o of [cm, srv, wrk])
      need(annotated(o, INSECURE.tls), `${o.kind}/${o.metadata.name}: TLS is off, so it must carry the annotation ${INSECURE.tls}`);
  }

  // Credentials: a directory with one file per role, each from that role's Secret only.
  if (credsOn) {
    const f = fileOf(ps, c, data.JOBQ_CREDENTIALS_FILE);
    const v = f?.volume;
    need(f && f.file === "" && v?.projected, `jobqd: JOBQ_CREDENTIALS_FILE=${data.JOBQ_CREDENTIALS_FILE} must be the mount path of a projected volume`);
    if (v?.projected) {
      need(modeOk(v.projected.defaultMode), "jobqd: the credentials volume's defaultMode must be at most 0440");
      const srcs = v.projected.sources || [];
      for (const src of srcs) {
        const sec = src.secret;
        const role = /^jobq-token-(\w+)$/.exec(sec?.name || "")?.[1];
        need(sec && ROLES.includes(role), `jobqd: the credentials volume may only project the Secrets jobq-token-ROLE (${JSON.stringify(src)})`);
        if (!sec || !ROLES.includes(role)) continue;
        const items = sec.items || [];
        need(items.length === 1, `jobqd: jobq-token-${role} must be projected through items (the file name fixes the role)`);
        for (const it of items) {
          const okToken = it.key === "token" && it.path === role && sec.optional !== true;
          const okPrev = it.key === "previous" && it.path === `${role}.previous` && sec.optional === true;
          need(okToken || okPrev, `jobqd: jobq-token-${role} key ${it.key} -> ${it.path}${sec.optional ? " (optional)" : ""}: want token -> ${role} (required) or previous -> ${role}.previous (optional)`);
          need(it.mode === undefined || modeOk(it.mode), `jobqd: jobq-token-${role} item mode ${it.mode?.toString(8)} too open`);
        }
      }
      for (const role of ROLES)
        need(srcs.some((x) => x.secret?.name === `jobq-token-${role}` && x.secret.optional !== true &&
                              (x.secret.items || []).some((i) => i.key === "token" && i.path === role)),
             `jobqd: the credentials volume lacks the ${role} token (Secret jobq-token-${role}, key token -> ${role})`);
    }
    need(["on", "true", "1", "yes"].includes(data.JOBQ_METRICS_AUTH), "ConfigMap: JOBQ_METRICS_AUTH must be on with credentials (/metrics for reader and admin tokens)");
    const tf = wenv.JOBQ_AUTH_TOKEN_FILE?.value;
    const wf = tf && fileOf(wps, wc, tf);
    const wsf = wf && secretFile(wf.volume, wf.file);
    need(wsf && wsf.secret === "jobq-token-worker" && wsf.key === "token" && !wsf.optional,
         `worker: JOBQ_AUTH_TOKEN_FILE=${tf} must be key token of the Secret jobq-token-worker, mounted (not optional)`);
  } else {
    need(wenv.JOBQ_AUTH_TOKEN_FILE === undefined, "worker: JOBQ_AUTH_TOKEN_FILE is set but credentials are off");
    need(!["on", "true", "1", "yes"].includes(data.JOBQ_METRICS_AUTH), "ConfigMap: JOBQ_METRICS_AUTH on without credentials: jobqd refuses to start");
    for (const o of [cm, srv, wrk])
      need(annotated(o, INSECURE.credentials), `${o.kind}/${o.metadata.name}: credentials are off, so it must carry the annotation ${INSECURE.credentials}`);
  }

  // Nothing dangles: every mount names a volume, every path setting names a mounted file.
  for (const w of [srv, wrk, job]) {
    const p = podSpec(w);
    for (const x of [...(p.initContainers || []), ...p.containers])
      for (const m of x.volumeMounts || [])
        need((p.volumes || []).some((v) => v.name === m.name), `${w.metadata.name}: mount ${m.mountPath} names no volume ${m.name}`);
    for (const v of p.volumes || [])
      need(p.containers.concat(p.initContainers || []).some((x) => (x.volumeMounts || []).some((m) => m.name === v.name)),
           `${w.metadata.name}: volume ${v.name} is mounted nowhere`);
  }
}

// ---------------------------------------------------------------------------------------------

function loadRendered(file) {
  const text = fs.readFileSync(file, "utf8");
  const objs = text.trimStart().startsWith("[") ? JSON.parse(text)
    : YAML.parseAllDocuments(text, { version: "1.1" }).map((d) => {
      if (d.errors.length) throw new Error(`${file}: ${d.errors[0].message}`);
      return d.toJS();
    }).filter(Boolean);
  // kustomize folds long base64 values of a Secret over several lines.
  for (const o of objs)
    if (o.kind === "Secret" && o.data)
      for (const k of Object.keys(o.data)) o.data[k] = String(o.data[k]).replace(/\s/g, "");
  return objs;
}

function canonical(objs) {
  const sortKeys = (v) => Array.isArray(v) ? v.map(sortKeys)
    : v && typeof v === "object" ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, sortKeys(v[k])])) : v;
  return objs.map((o) => JSON.stringify(sortKeys(o))).sort();
}

// ---------------------------------------------------------------------------------------------
// make-secrets.sh's Secrets against the base.

const decode = (s, key) => Buffer.from(String(s.data?.[key] ?? "").replace(/\s/g, ""), "base64");

function checkSecrets(secrets, base) {
  const need = (cond, msg) => { if (!cond) fail(msg); };
  const by = new Map(secrets.filter((o) => o.kind === "Secret").map((o) => [o.metadata.name, o]));
  need(secrets.every((o) => o.kind === "Secret"), "secrets: the kustomization renders something other than Secrets");
  // Everything the base's pods read, except the database Secret made by hand, is made here.
  for (const w of base.filter((o) => podSpec(o)))
    for (const src of secretSources(podSpec(w))) {
      if (src.name === "jobq-database") continue;
      const s = by.get(src.name);
      need(s || src.optional, `secrets: ${w.metadata.name} reads Secret ${src.name} (${src.where}), which make-secrets.sh does not make`);
      for (const k of src.keys || [])
        need(!s || s.data?.[k] !== undefined || src.optional, `secrets: Secret ${src.name} has no key ${k} (${w.metadata.name}, ${src.where})`);
    }
  const tokens = [];
  for (const role of ROLES) {
    const s = by.get(`jobq-token-${role}`);
    if (!s) continue;
    need((s.type || "Opaque") === "Opaque", `secrets: jobq-token-${role} must be Opaque`);
    for (const k of Object.keys(s.data || {})) {
      need(k === "token" || k === "previous", `secrets: jobq-token-${role} has an unexpected key ${k}`);
      const t = decode(s, k).toString();
      need(/^[0-9a-f]{64}$/.test(t), `secrets: jobq-token-${role}/${k} is not 32 random bytes in hex`);
      tokens.push(t);
    }
  }
  need(new Set(tokens).size === tokens.length, "secrets: two credentials share a token");
  const keys = [];
  for (const [name, s] of by) {
    for (const [k] of Object.entries(s.data || {})) {
      const text = decode(s, k).toString();
      if (/PRIVATE KEY-----/.test(text)) {
        need(k === "tls.key", `secrets: ${name}/${k} holds a private key (only tls.key may; the CA's key never leaves make-secrets.sh's folder)`);
        keys.push(text);
      }
    }
    if (name.startsWith("jobq-tls")) {
      need(s.type === "kubernetes.io/tls", `secrets: ${name} must be of type kubernetes.io/tls`);
      for (const k of ["tls.crt", "tls.key", "ca.crt"]) need(s.data?.[k] !== undefined, `secrets: ${name} lacks ${k}`);
    }
  }
  need(new Set(keys).size === keys.length, "secrets: two certificates share a private key");
}

// ---------------------------------------------------------------------------------------------
// What the kubelet would make of one container: its Secret files and its environment.

function materialize(objs, secretObjs, workload, containerName, outDir, prefix) {
  const w = objs.find((o) => `${o.kind}/${o.metadata.name}` === workload);
  if (!w) throw new Error(`materialize: no ${workload}`);
  const ps = podSpec(w);
  const c = ps.containers.find((x) => x.name === containerName);
  if (!c) throw new Error(`materialize: ${workload} has no container ${containerName}`);
  const secrets = new Map(secretObjs.filter((o) => o.kind === "Secret").map((o) => [o.metadata.name, o]));
  const fsGroup = ps.securityContext?.fsGroup;
  const asRoot = process.getuid && process.getuid() === 0;
  for (const m of c.volumeMounts || []) {
    const v = (ps.volumes || []).find((x) => x.name === m.name);
    if (!v) throw new Error(`materialize: mount ${m.mountPath}: no volume ${m.name}`);
    if (m.subPath) throw new Error(`materialize: subPath is not simulated (${m.name})`);
    const dir = path.join(outDir, m.mountPath);
    fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
    if (v.emptyDir) continue;
    const files = [];
    // project: the kubelet's rules: a missing Secret or key stops the pod unless optional.
    const project = (name, items, optional, mode) => {
      const s = secrets.get(name);
      if (!s) {
        if (optional) return;
        throw new Error(`materialize: Secret ${name} does not exist: the pod would not start (volume ${v.name})`);
      }
      for (const it of items || Object.keys(s.data || {}).map((k) => ({ key: k, path: k }))) {
        if (s.data?.[it.key] === undefined) {
          if (optional) continue;
          throw new Error(`materialize: Secret ${name} has no key ${it.key}: the pod would not start (volume ${v.name})`);
        }
        files.push({ path: it.path, bytes: decode(s, it.key), mode: it.mode ?? mode });
      }
    };
    if (v.secret) project(v.secret.secretName, v.secret.items, v.secret.optional === true, v.secret.defaultMode ?? 0o644);
    else if (v.projected) {
      for (const src of v.projected.sources || []) {
        if (!src.secret) throw new Error(`materialize: projected source ${Object.keys(src)} is not simulated`);
        project(src.secret.name, src.secret.items, src.secret.optional === true, v.projected.defaultMode ?? 0o644);
      }
    } else throw new Error(`materialize: volume ${v.name}: only secret, projected and emptyDir are simulated`);
    // The kubelet's atomic layout: files in a timestamped folder, ..data pointing at it, and one
    // symbolic link per top-level name through ..data.
    const stamp = "..2000_01_01_00_00_00.000000000";
    fs.mkdirSync(path.join(dir, stamp), { mode: 0o755 });
    for (const f of files) {
      const target = path.join(dir, stamp, f.path);
      fs.mkdirSync(path.dirname(target), { recursive: true, mode: 0o755 });
      fs.writeFileSync(target, f.bytes);
      // With fsGroup, the kubelet gives the group read access and the file that group.
      const mode = fsGroup !== undefined ? f.mode | 0o440 : f.mode;
      if (asRoot && fsGroup !== undefined) fs.chownSync(target, 0, fsGroup);
      fs.chmodSync(target, mode);
    }
    fs.symlinkSync(stamp, path.join(dir, "..data"));
    for (const top of new Set(files.map((f) => f.path.split("/")[0])))
      fs.symlinkSync(path.join("..data", top), path.join(dir, top));
  }
  const env = [];
  const mounts = (c.volumeMounts || []).map((m) => m.mountPath.replace(/\/$/, ""));
  const rewrite = (val) => mounts.some((mp) => val === mp || val.startsWith(mp + "/")) ? prefix + val : val;
  for (const ef of c.envFrom || []) {
    if (!ef.configMapRef) throw new Error("materialize: only envFrom configMapRef is simulated");
    const cm = objs.find((o) => o.kind === "ConfigMap" && o.metadata.name === ef.configMapRef.name);
    if (!cm) throw new Error(`materialize: no ConfigMap ${ef.configMapRef.name}`);
    for (const [k, val] of Object.entries(cm.data || {})) env.push([k, rewrite(String(val))]);
  }
  for (const e of c.env || []) {
    if (e.value !== undefined) env.push([e.name, rewrite(String(e.value))]);
    else if (e.valueFrom?.secretKeyRef) console.error(`materialize: ${e.name} from Secret ${e.valueFrom.secretKeyRef.name}/${e.valueFrom.secretKeyRef.key}: left to the caller`);
    else throw new Error(`materialize: env ${e.name}: only values and secretKeyRef are simulated`);
  }
  // Later entries win, as in the kubelet (env over envFrom).
  const merged = new Map(env);
  fs.writeFileSync(path.join(outDir, "env"), [...merged].map(([k, val]) => `${k}=${val}\0`).join(""));
  fs.writeFileSync(path.join(outDir, "argv"), [...(c.command || []), ...(c.args || [])].map((a) => `${a}\0`).join(""));
}

const [cmd, target, ...rest] = process.argv.slice(2);
const opt = {};
for (let i = 0; i < rest.length; i += 2) opt[rest[i].replace(/^--/, "").replace(/-(\w)/g, (_, x) => x.toUpperCase())] = rest[i + 1];
if (opt.uid !== undefined) opt.uid = Number(opt.uid);

if (cmd === "render") {
  process.stdout.write(JSON.stringify(render(target), null, 1) + "\n");
} else if (cmd === "materialize") {
  const [secretsFile, workload, container, outDir, prefix] = rest;
  materialize(loadRendered(target), loadRendered(secretsFile), workload, container, outDir, prefix ?? "");
} else if (cmd === "secrets") {
  const objs = loadRendered(target);
  if (opt.sameAs && JSON.stringify(canonical(objs)) !== JSON.stringify(canonical(loadRendered(opt.sameAs))))
    fail("secrets: the built-in renderer and kubectl kustomize disagree");
  for (const o of objs) await validateSchema(o);
  checkSecrets(objs, loadRendered(opt.base));
  for (const p of problems) console.log(`FAIL: ${p}`);
  console.log(`k8s_check: ${objs.length} Secrets (${objs.map((o) => o.metadata.name).join(", ")}); ${problems.length} problem(s)`);
  process.exit(problems.length ? 1 : 0);
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
  console.error("usage: k8s_check.mjs render DIR | check RENDERED [--same-as F] [--uid N] [--migrations-dir D] [--jobqd-help F] [--worker-help F] [--secure yes|no]\n" +
                "       | secrets SECRETS_RENDERED --base RENDERED [--same-as F] | materialize RENDERED SECRETS_RENDERED KIND/NAME CONTAINER OUTDIR PREFIX");
  process.exit(2);
}
