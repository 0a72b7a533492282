#!/usr/bin/env python3
"""The Python half of scripts/k8s-emulate.sh (run it with the venv of scripts/k8s-check.sh: it
needs helm-python-sdk and PyYAML for `render`; the other commands use the standard library only).

    emulate.py render OUT [--values FILE] [--dns ADDR]
        Renders the chart (release and namespace from K8S_EMU_RELEASE / K8S_EMU_NAMESPACE,
        default chordnet/chordnet) like `helm template`, and turns its StatefulSet into what a
        kubelet would run, for `docker run`: OUT/meta.sh (shell variables: names, image, grace
        period, minReadySeconds, probe paths, ports, ...), OUT/config/<volume>/<key> (the
        ConfigMaps the pod mounts), and for ordinals 0..K8S_EMU_ORDINALS-1:
        OUT/pod-N.args (NUL-separated `docker run` arguments after --name/--network/--ip: DNS
        aliases, resolv.conf, user, security options, resources, the env with $(VAR) and
        fieldRef resolved as Kubernetes does, mounts, image, args), OUT/pod-N.volumes (the
        named volumes = PVCs to create, and the fsGroup to give them), and OUT/pods.json.
    emulate.py wait-ready WORK TIMEOUT ORDINAL...     until /readyz answers 200 on every pod
    emulate.py wait-ring WORK TIMEOUT ORDINAL...      ... and the ring walk from every pod is
                                                      complete with exactly these pods, and all
                                                      report one ring_id (printed; written to
                                                      WORK/ring_id)
    emulate.py upload WORK COUNT SEED ORDINAL...      COUNT files of random size (seeded) through
                                                      random pods; each must download identical
                                                      from another pod
    emulate.py verify WORK TIMEOUT ORDINAL...         every uploaded file downloads byte-identical
                                                      from every listed pod
    emulate.py wait-copies WORK TIMEOUT ORDINAL...    every file is stored (right sha256) on at
                                                      least min(ring.replicas, pods) pods
    emulate.py ip SUBNET N                            the gateway and N host addresses (one a line)

WORK/pods/<pod name>.ip holds the current address of each running pod (written by the shell
script); the API is reached from the host at that address, like the kubelet's probes.
"""

import hashlib
import ipaddress
import json
import os
import random
import re
import shlex
import sys
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
CHART = ROOT / "helm" / "chordnet"


def fail(msg):
    print(f"  FAIL: {msg}", flush=True)
    sys.exit(1)


def log(msg):
    print(f"  {msg}", flush=True)


######################################################################################## render

def deep_merge(base, over):
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def quantity_bytes(q):
    """A Kubernetes memory quantity ("256Mi", "1G", "1e6", "1048576") in bytes."""
    m = re.fullmatch(r"([0-9.]+(?:e[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|K|M|G|T|P|E|m)?", str(q))
    if not m:
        fail(f"cannot read the quantity {q!r}")
    factor = {None: 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
              "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15,
              "E": 10**18, "m": 10**-3}[m.group(2)]
    return int(float(m.group(1)) * factor)


def cpu_millis(q):
    q = str(q)
    return int(q[:-1]) if q.endswith("m") else int(float(q) * 1000)


def expand(text, env):
    """Kubernetes' $(VAR) expansion: defined variables are replaced, $$ escapes a $, anything
    else stays as written."""
    out, i = [], 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("$(", i) and ")" in text[i + 2:]:
            j = text.index(")", i + 2)
            name = text[i + 2:j]
            out.append(env[name] if name in env else text[i:j + 1])
            i = j + 1
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def cmd_render(out, values_file=None, dns=None):
    sys.path.insert(0, str(HERE.parent))
    import yaml
    import check  # scripts/k8s/check.py: renders the chart exactly as scripts/k8s-check.sh does

    release = os.environ.get("K8S_EMU_RELEASE", "chordnet")
    namespace = os.environ.get("K8S_EMU_NAMESPACE", "chordnet")
    ordinals = int(os.environ.get("K8S_EMU_ORDINALS", "6"))
    overrides = yaml.safe_load(Path(values_file).read_text()) if values_file else {}
    values = deep_merge(yaml.safe_load((CHART / "values.yaml").read_text()), overrides or {})
    manifests = check.render(overrides or {}, name=release, namespace=namespace, tests=False)
    docs = [d for text in manifests.values() for d in yaml.safe_load_all(text) if d]
    sts = [d for d in docs if d["kind"] == "StatefulSet"]
    if len(sts) != 1:
        fail(f"the chart renders {len(sts)} StatefulSets, expected 1")
    sts = sts[0]
    spec, pod = sts["spec"], sts["spec"]["template"]["spec"]
    config_maps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    headless = spec["serviceName"]
    svc = services.get(headless)
    if not svc or svc["spec"].get("clusterIP") != "None":
        fail(f"serviceName {headless} is not a headless Service of the chart")
    if not svc["spec"].get("publishNotReadyAddresses"):
        fail(f"{headless} does not publish not-ready addresses: the emulation gives every pod its DNS name at once")
    if len(pod["containers"]) != 1 or pod.get("initContainers"):
        fail("the emulation runs one container per pod and no init containers")
    c = pod["containers"][0]
    for unsupported in ("envFrom", "lifecycle", "workingDir"):
        if c.get(unsupported):
            fail(f"the container uses {unsupported}, which the emulation does not implement")

    domain = values.get("clusterDomain", "cluster.local")
    sts_name = sts["metadata"]["name"]
    psc, csc = pod.get("securityContext", {}), c.get("securityContext", {})
    sc = {**psc, **csc}  # the container's settings win
    user, group = sc.get("runAsUser"), sc.get("runAsGroup")
    fs_group = psc.get("fsGroup")
    if sc.get("runAsNonRoot") and not user:
        fail("runAsNonRoot without a numeric runAsUser: the kubelet would refuse to start the pod")
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", []) if p.get("name")}

    def probe(kind):
        p = c.get(kind) or {}
        get = p.get("httpGet") or {}
        port = get.get("port")
        return get.get("path", ""), ports.get(port, port)

    ready_path, ready_port = probe("readinessProbe")
    live_path, live_port = probe("livenessProbe")
    if not ready_path:
        fail("the container has no httpGet readiness probe")

    out = Path(out)
    (out / "config").mkdir(parents=True, exist_ok=True)
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    claims = {t["metadata"]["name"] for t in spec.get("volumeClaimTemplates", [])}
    config_toml = {}
    pods = {}
    for i in range(ordinals):
        name = f"{sts_name}-{i}"
        labels = dict(sts["spec"]["template"]["metadata"].get("labels", {}))
        labels["statefulset.kubernetes.io/pod-name"] = name
        labels["apps.kubernetes.io/pod-index"] = str(i)
        annotations = sts["spec"]["template"]["metadata"].get("annotations", {})
        fields = {
            "metadata.name": name,
            "metadata.namespace": namespace,
            "spec.serviceAccountName": pod.get("serviceAccountName", "default"),
            "spec.nodeName": "emulated-node",
        }
        env = {}
        for e in c.get("env", []):
            if "value" in e or "valueFrom" not in e:
                env[e["name"]] = expand(str(e.get("value", "")), env)
                continue
            src = e["valueFrom"]
            if "fieldRef" in src:
                path = src["fieldRef"]["fieldPath"]
                m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
                if path in fields:
                    env[e["name"]] = fields[path]
                elif m:
                    env[e["name"]] = (labels if m.group(1) == "labels" else annotations).get(m.group(2), "")
                else:
                    fail(f"env {e['name']}: fieldRef {path} is not emulated")
            elif "configMapKeyRef" in src:
                ref = src["configMapKeyRef"]
                env[e["name"]] = config_maps[ref["name"]][ref["key"]]
            else:
                fail(f"env {e['name']}: {list(src)} is not emulated")
        aliases = []
        for base in (f"{name}.{headless}", headless):
            aliases += [f"{base}.{namespace}.svc.{domain}", f"{base}.{namespace}.svc",
                        f"{base}.{namespace}", base]
        # No --hostname: Docker would make the bare pod name a DNS alias for every container,
        # which Kubernetes' DNS does not serve (the peer does not use its hostname).
        args = []
        for a in aliases:
            args += ["--network-alias", a]
        # The pod's resolv.conf as the kubelet writes it (dnsPolicy ClusterFirst).
        resolv = ["--dns", dns] if dns else []
        for s in (f"{namespace}.svc.{domain}", f"svc.{domain}", domain):
            resolv += ["--dns-search", s]
        resolv += ["--dns-option", "ndots:5"]
        args += resolv
        for k, v in labels.items():
            args += ["--label", f"{k}={v}"]
        args += ["--label", "io.chordnet.k8s-emulate=1"]
        grace = int(pod.get("terminationGracePeriodSeconds", 30))
        args += ["--stop-signal", "SIGTERM", "--stop-timeout", str(grace)]
        if user is not None:
            args += ["--user", f"{user}:{group if group is not None else 0}"]
        if fs_group is not None:
            args += ["--group-add", str(fs_group)]
        for g in psc.get("supplementalGroups", []):
            args += ["--group-add", str(g)]
        if sc.get("readOnlyRootFilesystem"):
            args.append("--read-only")
        caps = sc.get("capabilities", {})
        for cap in caps.get("drop", []):
            args += ["--cap-drop", cap]
        for cap in caps.get("add", []):
            args += ["--cap-add", cap]
        if sc.get("allowPrivilegeEscalation") is False:
            args += ["--security-opt", "no-new-privileges"]
        if sc.get("privileged"):
            args.append("--privileged")
        if (sc.get("seccompProfile") or {}).get("type") == "Unconfined":
            args += ["--security-opt", "seccomp=unconfined"]
        res = c.get("resources", {})
        if "memory" in res.get("limits", {}):
            mem = quantity_bytes(res["limits"]["memory"])
            args += ["--memory", str(mem), "--memory-swap", str(mem)]  # no swap, as on a node
        if "cpu" in res.get("limits", {}):
            args += ["--cpus", f"{cpu_millis(res['limits']['cpu']) / 1000:g}"]
        if "cpu" in res.get("requests", {}):
            args += ["--cpu-shares", str(max(2, cpu_millis(res["requests"]["cpu"]) * 1024 // 1000))]
        for k, v in env.items():
            args += ["--env", f"{k}={v}"]
        named = []
        for m in c.get("volumeMounts", []):
            if m.get("subPath") or m.get("subPathExpr"):
                fail(f"volumeMount {m['name']}: subPath is not emulated")
            ro = bool(m.get("readOnly"))
            target = m["mountPath"]
            if m["name"] in claims:
                vol = f"{m['name']}-{name}"  # the PVC name a StatefulSet gives
                named.append(vol)
                # volume-nocopy: a PVC starts empty; Docker would otherwise copy the image's
                # directory (and its owner) into a new volume, which no kubelet does.
                args += ["--mount", f"type=volume,src={vol},dst={target},volume-nocopy"
                         + (",readonly" if ro else "")]
                continue
            v = volumes.get(m["name"])
            if v is None:
                fail(f"volumeMount {m['name']} has no volume")
            if "configMap" in v:
                cm = v["configMap"]["name"]
                d = out / "config" / m["name"]
                d.mkdir(parents=True, exist_ok=True)
                data = config_maps.get(cm)
                if data is None:
                    fail(f"volume {m['name']}: the chart renders no ConfigMap {cm}")
                items = v["configMap"].get("items") or [{"key": k, "path": k} for k in data]
                for it in items:
                    (d / it["path"]).write_text(data[it["key"]])
                    if it["path"].endswith(".toml"):
                        config_toml[f"{cm}/{it['key']}"] = tomllib.loads(data[it["key"]])
                args += ["--mount", f"type=bind,src={d},dst={target},readonly"]
            elif "emptyDir" in v:
                # An emptyDir: a tmpfs here (gone when the container is removed, as the emptyDir
                # is with its pod); fsGroup makes it group-owned and setgid, mode 2777.
                opts = ["rw", "nosuid", "nodev", "mode=" + ("2777" if fs_group is not None else "1777")]
                if fs_group is not None:
                    opts.append(f"gid={fs_group}")
                limit = (v["emptyDir"] or {}).get("sizeLimit")
                if limit:
                    opts.append(f"size={quantity_bytes(limit)}")
                if ro:
                    opts[0] = "ro"
                args += ["--tmpfs", f"{target}:{','.join(opts)}"]
            else:
                fail(f"volume {m['name']}: {list(v)} is not emulated")
        if c.get("command"):
            cmd = [expand(x, env) for x in c["command"]]
            args += ["--entrypoint", cmd[0], c["image"], *cmd[1:]]
        else:
            args.append(c["image"])
        args += [expand(x, env) for x in c.get("args", [])]
        (out / f"pod-{i}.args").write_bytes(b"".join(a.encode() + b"\0" for a in args))
        (out / f"pod-{i}.volumes").write_text("".join(f"{v}\n" for v in named))
        advertise = env.get("CHORDNET_NODE__ADVERTISE")
        if not advertise:
            fail("the container sets no CHORDNET_NODE__ADVERTISE")
        pods[i] = {"name": name, "advertise": advertise, "aliases": aliases, "env": env}

    # The peer configuration as the peers see it: the ConfigMap's TOML, then the env.
    ring = {}
    for t in config_toml.values():
        ring = deep_merge(ring, t)
    env0 = pods[0]["env"]
    replication = int(env0.get("CHORDNET_RING__REPLICAS", ring.get("ring", {}).get("replicas", 3)))
    leave_timeout = env0.get("CHORDNET_RING__LEAVE_TIMEOUT", ring.get("ring", {}).get("leave_timeout", "20s"))
    meta = {
        "STS_NAME": sts_name,
        "HEADLESS": headless,
        "DOMAIN": domain,
        "NAMESPACE": namespace,
        "RELEASE": release,
        "REPLICAS": spec.get("replicas", 1),
        "POLICY": spec.get("podManagementPolicy", "OrderedReady"),
        "IMAGE": c["image"],
        "GRACE": int(pod.get("terminationGracePeriodSeconds", 30)),
        "MIN_READY": int(spec.get("minReadySeconds", 0)),
        "READY_PATH": ready_path,
        "READY_PORT": ready_port,
        "LIVE_PATH": live_path,
        "LIVE_PORT": live_port,
        "FS_GROUP": fs_group if fs_group is not None else "",
        "FS_GROUP_POLICY": psc.get("fsGroupChangePolicy", "Always"),
        "REPLICATION": replication,
        "LEAVE_TIMEOUT": leave_timeout,
        "SEEDS": env0.get("CHORDNET_RING__SEEDS", ""),
        "ORDINALS": ordinals,
        "CONFIG_FILES": " ".join(sorted(config_toml)),
    }
    # A client container for DNS checks from inside the network: a pod's resolv.conf and user.
    client = resolv + (["--user", f"{user}:{group if group is not None else 0}"] if user is not None else [])
    (out / "client.args").write_bytes(b"".join(a.encode() + b"\0" for a in client))
    (out / "meta.sh").write_text("".join(f"{k}={shlex.quote(str(v))}\n" for k, v in meta.items()))
    (out / "pods.json").write_text(json.dumps({"meta": meta, "pods": pods}, indent=1))
    log(f"rendered release {release} in namespace {namespace}: StatefulSet {sts_name} "
        f"({meta['POLICY']}, {meta['REPLICAS']} replicas, grace {meta['GRACE']}s, "
        f"minReadySeconds {meta['MIN_READY']}), headless Service {headless}, image {c['image']}")
    log(f"pod {pods[0]['name']}: advertise {pods[0]['advertise']}; seeds {meta['SEEDS']}")
    log(f"config: {meta['CONFIG_FILES']} (ring.replicas {replication}, leave_timeout {leave_timeout}); "
        f"transport {env0.get('CHORDNET_TRANSPORT__KIND', 'http')}; readiness GET :{ready_port}{ready_path}")


def cmd_ip(subnet, n):
    net = ipaddress.ip_network(subnet)
    if net.version != 4 or net.num_addresses < int(n) + 16:
        fail(f"{subnet}: an IPv4 subnet with room for {n} pods is needed")
    hosts = net.hosts()
    print(next(hosts))  # the gateway (the host's address on the bridge)
    for _ in range(9):
        next(hosts)
    for _ in range(int(n)):
        print(next(hosts))


######################################################################################### checks

class Cluster:
    def __init__(self, work):
        self.work = Path(work)
        info = json.loads((self.work / "spec" / "pods.json").read_text())
        self.meta = info["meta"]
        self.pods = {int(k): v for k, v in info["pods"].items()}
        self.port = self.meta["READY_PORT"]

    def name(self, i):
        return self.pods[i]["name"]

    def base(self, i):
        ip = (self.work / "pods" / f"{self.name(i)}.ip").read_text().strip()
        return f"http://{ip}:{self.port}"

    def request(self, i, path, data=None, method=None, timeout=5):
        req = urllib.request.Request(self.base(i) + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/octet-stream")
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()

    def get_json(self, i, path):
        status, body = self.request(i, path)
        return json.loads(body)

    def ready(self, i):
        try:
            status, _ = self.request(i, self.meta["READY_PATH"], timeout=2)
            return status == 200, ""
        except urllib.error.HTTPError as e:
            return False, e.read().decode(errors="replace")[:300]
        except OSError as e:
            return False, str(e)


def ordinals(args):
    return [int(x) for x in args]


def cmd_wait_ready(work, timeout, *ords):
    cl, ords, t0 = Cluster(work), ordinals(ords), time.monotonic()
    pending = {i: "" for i in ords}
    when = {}
    while pending and time.monotonic() - t0 < float(timeout):
        for i in list(pending):
            ok, why = cl.ready(i)
            if ok:
                when[i] = time.monotonic() - t0
                del pending[i]
            else:
                pending[i] = why
        if pending:
            time.sleep(0.25)
    if pending:
        for i, why in pending.items():
            log(f"{cl.name(i)} not ready: {why}")
        fail(f"{len(pending)} pod(s) not ready after {timeout}s")
    log("ready: " + ", ".join(f"{cl.name(i)} {when[i]:.1f}s" for i in ords))


def ring_state(cl, ords):
    """None when every pod is ready, its ring walk is complete with exactly `ords`, and all
    report one ring id; otherwise the reason."""
    want = sorted(cl.pods[i]["advertise"] for i in ords)
    ids = {}
    for i in ords:
        ok, why = cl.ready(i)
        if not ok:
            return f"{cl.name(i)} not ready ({why})", None
        try:
            walk = cl.get_json(i, "/v1/ring")
            node = cl.get_json(i, "/v1/node")
        except (OSError, ValueError) as e:
            return f"{cl.name(i)}: {e}", None
        got = sorted(n["address"] for n in walk["nodes"])
        if not walk.get("complete") or got != want:
            return (f"ring walk from {cl.name(i)}: complete={walk.get('complete')}, "
                    f"{len(got)} nodes {[a.split('.')[0] for a in got]}"), None
        ids[cl.name(i)] = node.get("ring_id")
        transport = cl.pods[i]["env"].get("CHORDNET_TRANSPORT__KIND", "http")
        if node.get("transport") != transport:
            return f"{cl.name(i)} speaks {node.get('transport')}, the chart says {transport}", None
    if len(set(ids.values())) != 1 or None in ids.values():
        return f"ring ids differ: {ids}", None
    return None, next(iter(ids.values()))


def cmd_wait_ring(work, timeout, *ords):
    cl, ords, t0 = Cluster(work), ordinals(ords), time.monotonic()
    why, ring_id = "not checked", None
    while time.monotonic() - t0 < float(timeout):
        why, ring_id = ring_state(cl, ords)
        if why is None:
            break
        time.sleep(0.5)
    if why is not None:
        fail(f"no single ring of {len(ords)} after {timeout}s: {why}")
    first = cl.work / "ring_id"
    note = ""
    if first.exists() and first.read_text().strip() != ring_id:
        fail(f"the ring id changed: {first.read_text().strip()} before, {ring_id} now (a second ring was founded)")
    if not first.exists():
        first.write_text(ring_id + "\n")
    else:
        note = " (the same as at the start)"
    log(f"one ring of {len(ords)} after {time.monotonic() - t0:.1f}s: /readyz 200 and a complete "
        f"ring walk listing exactly these pods from every pod; one ring_id {ring_id}{note}; "
        f"peers talk {cl.pods[ords[0]]['env'].get('CHORDNET_TRANSPORT__KIND', 'http')}")


def files_state(work):
    p = Path(work) / "files.json"
    return json.loads(p.read_text()) if p.exists() else {}


def cmd_upload(work, count, seed, *ords):
    cl, ords = Cluster(work), ordinals(ords)
    rng = random.Random(int(seed))
    state = files_state(work)
    store = cl.work / "files"
    store.mkdir(exist_ok=True)
    t0, total = time.monotonic(), 0
    for n in range(int(count)):
        size = rng.randint(1, 100 * 1024)
        data = rng.randbytes(size)
        name = f"emulate-{seed}-{n:03d}.bin"
        sha = hashlib.sha256(data).hexdigest()
        up, down = rng.sample(ords, 2)
        try:
            status, body = cl.request(up, f"/v1/files/{name}", data=data, method="PUT", timeout=20)
        except urllib.error.HTTPError as e:
            fail(f"PUT {name} ({size} bytes) through {cl.name(up)}: {e.code} {e.read()[:300]!r}")
        if status not in (200, 201):
            fail(f"PUT {name} through {cl.name(up)}: status {status}")
        reply = json.loads(body)
        if reply.get("sha256") != sha or reply.get("size") != size:
            fail(f"PUT {name}: the peer stored {reply.get('size')} bytes, sha256 {reply.get('sha256')}; sent {size}, {sha}")
        status, got = cl.request(down, f"/v1/files/{name}", timeout=20)
        if hashlib.sha256(got).hexdigest() != sha:
            fail(f"GET {name} from {cl.name(down)}: {len(got)} bytes, not the {size} uploaded through {cl.name(up)}")
        (store / name).write_bytes(data)
        state[name] = {"size": size, "sha256": sha, "via": cl.name(up)}
        total += size
    (cl.work / "files.json").write_text(json.dumps(state, indent=1))
    log(f"uploaded {count} files ({total / 1024:.0f} KiB, 1 B to 100 KiB, seed {seed}) through random pods "
        f"in {time.monotonic() - t0:.1f}s; each downloaded byte-identical from another pod")


def cmd_verify(work, timeout, *ords):
    cl, ords = Cluster(work), ordinals(ords)
    state = files_state(work)
    deadline = time.monotonic() + float(timeout)
    t0, retried, errors = time.monotonic(), 0, {}
    for name, f in sorted(state.items()):
        for i in ords:
            while True:
                try:
                    status, got = cl.request(i, f"/v1/files/{name}", timeout=10)
                    if hashlib.sha256(got).hexdigest() == f["sha256"]:
                        errors.pop((name, i), None)
                        break
                    errors[(name, i)] = f"{len(got)} bytes with another sha256"
                except urllib.error.HTTPError as e:
                    errors[(name, i)] = f"{e.code} {e.read()[:200]!r}"
                except OSError as e:
                    errors[(name, i)] = str(e)
                if time.monotonic() > deadline:
                    break
                retried += 1
                time.sleep(0.5)
    if errors:
        for (name, i), why in list(errors.items())[:10]:
            log(f"GET {name} from {cl.name(i)}: {why}")
        fail(f"{len(errors)} of {len(state) * len(ords)} downloads failed (retried until {timeout}s)")
    note = f", {retried} retries" if retried else ", no retries"
    log(f"all {len(state)} files download byte-identical from each of {', '.join(cl.name(i) for i in ords)} "
        f"({len(state) * len(ords)} downloads in {time.monotonic() - t0:.1f}s{note})")


def cmd_wait_copies(work, timeout, *ords):
    cl, ords = Cluster(work), ordinals(ords)
    state = files_state(work)
    want = min(int(cl.meta["REPLICATION"]), len(ords))
    t0 = time.monotonic()
    while True:
        copies = {name: 0 for name in state}
        why = ""
        for i in ords:
            try:
                stored = cl.get_json(i, "/v1/node/files")["stored"]
            except (OSError, ValueError, KeyError) as e:
                why = f"{cl.name(i)}: {e}"
                continue
            for s in stored:
                if s["name"] in copies and s["sha256"] == state[s["name"]]["sha256"]:
                    copies[s["name"]] += 1
        short = [n for n, c in copies.items() if c < want]
        if not short and not why:
            break
        if time.monotonic() - t0 > float(timeout):
            fail(f"after {timeout}s {len(short)} files have fewer than {want} copies "
                 f"(e.g. {short[:3]}: {[copies[n] for n in short[:3]]}) {why}")
        time.sleep(0.5)
    hist = {}
    for c in copies.values():
        hist[c] = hist.get(c, 0) + 1
    log(f"every file has at least {want} copies on these pods after {time.monotonic() - t0:.1f}s "
        f"(copies: {', '.join(f'{k}: {v} files' for k, v in sorted(hist.items()))})")


def main(argv):
    if not argv:
        print(__doc__)
        return 2
    cmd, args = argv[0], argv[1:]
    if cmd == "render":
        values = dns = None
        rest = []
        while args:
            a = args.pop(0)
            if a == "--values":
                values = args.pop(0)
            elif a == "--dns":
                dns = args.pop(0)
            else:
                rest.append(a)
        cmd_render(*rest, values_file=values, dns=dns)
    elif cmd == "ip":
        cmd_ip(*args)
    elif cmd == "wait-ready":
        cmd_wait_ready(*args)
    elif cmd == "wait-ring":
        cmd_wait_ring(*args)
    elif cmd == "upload":
        cmd_upload(*args)
    elif cmd == "verify":
        cmd_verify(*args)
    elif cmd == "wait-copies":
        cmd_wait_copies(*args)
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
