"""The chart's security.* values in rendered objects (used by scripts/k8s/check.py).

    secret_file_problems(pod_spec, container)   any render: each *_FILE variable of the peer
        names a file of a read-only, whole (no subPath) Secret volume that the peer's user can read
        (TLS files: or of a read-only csi-driver volume written for the peer's group)
    expected_security(values, docs)             one chart render against its merged values:
        the variables, volumes, test-pod tokens and ServiceMonitor authorization follow
        security.*, and nothing is set while a Secret name is empty; with mutual TLS from
        cert-manager per pod (the default), a csi-driver volume whose certificate names exactly
        each pod's own advertised host and no Certificate object; shared, one Certificate whose
        wildcard covers every pod
    network_policy_problems(docs)               the NetworkPolicy admits the peer port from the
        release's peers only, and the API port from the helm test pod and metricsFrom
"""

import posixpath

# Variable of the peer -> (security.* block, volume name, where the chart mounts it).
FILES = {
    "CHORDNET_SECURITY__RING_SECRET_FILE": ("ringSecret", "ring-secret", "/var/run/chordnet/ring-secret/keys"),
    "CHORDNET_API__TOKENS_FILE": ("apiTokens", "api-tokens", "/var/run/chordnet/api-tokens/tokens"),
}
# Mutual TLS (security.tls): variable -> the file in the peer-tls volume (the Secret's key of that name).
TLS_DIR = "/var/run/chordnet/tls"
# The namespace check.py renders into (what $(POD_NAMESPACE) becomes in the advertised host).
NAMESPACE = "chordnet"
TLS_FILES = {
    "CHORDNET_SECURITY__TLS__CA_FILE": "ca.crt",
    "CHORDNET_SECURITY__TLS__CERT_FILE": "tls.crt",
    "CHORDNET_SECURITY__TLS__KEY_FILE": "tls.key",
}


# cert-manager's csi-driver (security.tls.certificates = perPod): the TLS file -> (attribute of
# the file's name, the driver's default name).
CSI_DRIVER = "csi.cert-manager.io"
CSI_FILES = {
    "CHORDNET_SECURITY__TLS__CA_FILE": ("ca-file", "ca.crt"),
    "CHORDNET_SECURITY__TLS__CERT_FILE": ("certificate-file", "tls.crt"),
    "CHORDNET_SECURITY__TLS__KEY_FILE": ("privatekey-file", "tls.key"),
}


def _effective(pod_spec, container):
    return {**pod_spec.get("securityContext", {}), **container.get("securityContext", {})}


def secret_file_problems(pod_spec, container):
    problems = []
    env = {e["name"]: e for e in container.get("env", [])}
    volumes = {v["name"]: v for v in pod_spec.get("volumes", [])}
    mounts = container.get("volumeMounts", [])
    sc = _effective(pod_spec, container)
    fs_group = pod_spec.get("securityContext", {}).get("fsGroup")
    for var in list(FILES) + list(TLS_FILES):
        if var not in env:
            continue
        path = env[var].get("value", "")
        owner = [m for m in mounts if path.startswith(m["mountPath"].rstrip("/") + "/")]
        if not owner:
            problems.append(f"{var} is {path!r}, which no volume mount holds")
            continue
        m = max(owner, key=lambda m: len(m["mountPath"]))
        vol = volumes.get(m["name"], {})
        secret = vol.get("secret")
        if var in TLS_FILES and "csi" in vol:
            problems += _csi_file_problems(var, path, m, vol["csi"], pod_spec, container)
            continue
        if secret is None:
            problems.append(f"{var} {path!r} is on volume {m['name']}, which is not a Secret")
            continue
        if m.get("subPath") or m.get("subPathExpr"):
            problems.append(f"{var}: volume {m['name']} is mounted with a subPath (edits of the Secret would never reach the peer)")
        if m.get("readOnly") is not True:
            problems.append(f"{var}: volume {m['name']} is not mounted read-only")
        if m["mountPath"].rstrip("/") == "/etc/chordnet" or m["mountPath"].startswith("/etc/chordnet/"):
            problems.append(f"{var}: {m['mountPath']} is inside /etc/chordnet (the ConfigMap's mount)")
        rel = posixpath.relpath(path, m["mountPath"])
        items = secret.get("items")
        if items is not None and rel not in [i["path"] for i in items]:
            problems.append(f"{var} names {rel!r} in volume {m['name']}, whose items are {[i['path'] for i in items]}")
        mode = next((i.get("mode") for i in items or [] if i["path"] == rel), None)
        mode = secret.get("defaultMode", 0o644) if mode is None else mode
        if mode & 0o222 or mode & 0o111:
            problems.append(f"{var}: file mode {mode:#o} is writable or executable")
        # Secret files belong to root; with an fsGroup the kubelet makes them that group's and
        # adds group read (mode | 0440). The peer runs as runAsUser (never root here).
        readable = bool(mode & 0o004) or fs_group is not None
        if not readable:
            problems.append(f"{var}: file mode {mode:#o} with fsGroup {fs_group} and runAsUser {sc.get('runAsUser')}: "
                            "the peer cannot read it")
    return problems


def _csi_file_problems(var, path, mount, csi, pod_spec, container):
    """A TLS file on a cert-manager csi-driver volume: read-only, whole, the file is one the
    driver writes there, and the driver writes it for the peer's group."""
    problems = []
    attrs = csi.get("volumeAttributes", {})
    if csi.get("driver") != CSI_DRIVER:
        problems.append(f"{var}: volume {mount['name']} is a CSI volume of {csi.get('driver')!r}, want {CSI_DRIVER}")
    if csi.get("readOnly") is not True or mount.get("readOnly") is not True:
        problems.append(f"{var}: the csi-driver volume {mount['name']} is not read-only (the driver requires it)")
    if mount.get("subPath") or mount.get("subPathExpr"):
        problems.append(f"{var}: volume {mount['name']} is mounted with a subPath (renewals would never reach the peer)")
    rel = posixpath.relpath(path, mount["mountPath"])
    written = {attrs.get(f"{CSI_DRIVER}/{k}", d) for k, d in CSI_FILES.values()}
    if rel not in written:
        problems.append(f"{var} names {rel!r} in volume {mount['name']}, where the driver writes {sorted(written)}")
    sc = _effective(pod_spec, container)
    group = attrs.get(f"{CSI_DRIVER}/fs-group")
    if group is None or int(group) not in {sc.get("runAsGroup"), pod_spec.get("securityContext", {}).get("fsGroup")}:
        problems.append(f"{var}: the driver writes the files for fs-group {group}, the peer runs with group "
                        f"{sc.get('runAsGroup')} (fsGroup {pod_spec.get('securityContext', {}).get('fsGroup')})")
    return problems


def _first(docs, kind):
    for d in docs:
        if d["kind"] == kind:
            return d
    return None


def expected_security(values, docs):
    """Problems of one render against its (merged) values."""
    s = values["security"]
    problems = []
    sts = _first(docs, "StatefulSet")
    pspec = sts["spec"]["template"]["spec"]
    c = next(c for c in pspec["containers"] if c["name"] == "chordnet")
    env = {e["name"]: e for e in c.get("env", [])}
    volumes = {v["name"]: v for v in pspec.get("volumes", [])}
    mounts = {m["name"]: m for m in c.get("volumeMounts", [])}
    for var, (block, volume, path) in FILES.items():
        want = s[block]
        if not want["name"]:
            for what, present in (("variable " + var, var in env), ("volume " + volume, volume in volumes),
                                  ("mount " + volume, volume in mounts)):
                if present:
                    problems.append(f"security.{block}.name is empty, yet the peer has the {what}")
            continue
        if env.get(var, {}).get("value") != path:
            problems.append(f"{var} is {env.get(var)}, want {path!r}")
        secret = volumes.get(volume, {}).get("secret")
        base, file = posixpath.split(path)
        if not secret or secret.get("secretName") != want["name"] or secret.get("items") != [{"key": want["key"], "path": file}]:
            problems.append(f"volume {volume} is {volumes.get(volume)}, want Secret {want['name']} with the one item "
                            f"{want['key']} -> {file}")
        if mounts.get(volume, {}).get("mountPath") != base:
            problems.append(f"volume {volume} is mounted at {mounts.get(volume, {}).get('mountPath')}, want {base}")
    api = s["apiTokens"]
    protect = env.get("CHORDNET_API__PROTECT_METRICS", {}).get("value")
    if protect != ("true" if api["protectMetrics"] and api["name"] else None):
        problems.append(f"CHORDNET_API__PROTECT_METRICS is {protect!r} with protectMetrics {api['protectMetrics']}")
    problems += _tls_problems(values, docs, env, volumes, mounts)
    unknown = {n for n in env if n.startswith("CHORDNET_SECURITY__")} - set(FILES) - set(TLS_FILES)
    if unknown:
        problems.append(f"unexpected variables {sorted(unknown)}")
    problems += secret_file_problems(pspec, c)

    # The helm test pod: every container sends a (write) token of the Secret.
    test = next((d for d in docs if d["kind"] == "Pod" and d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "test"), None)
    if test is None:
        problems.append("no helm test pod")
    else:
        tspec = test["spec"]
        for tc in tspec.get("initContainers", []) + tspec.get("containers", []):
            token = next((e for e in tc.get("env", []) if e["name"] == "CHORDNET_TOKEN"), None)
            if not api["name"]:
                if token is not None:
                    problems.append(f"test container {tc['name']} gets CHORDNET_TOKEN without security.apiTokens.name")
                continue
            ref = (token or {}).get("valueFrom", {}).get("secretKeyRef")
            if ref != {"name": api["name"], "key": api["testTokenKey"]}:
                problems.append(f"test container {tc['name']}: CHORDNET_TOKEN is {token}, want Secret key "
                                f"{api['name']}/{api['testTokenKey']}")

    # The ServiceMonitor sends the metrics token exactly when /metrics needs one.
    sm = _first(docs, "ServiceMonitor")
    if values["serviceMonitor"]["enabled"]:
        if sm is None:
            problems.append("serviceMonitor.enabled but no ServiceMonitor")
        else:
            for ep in sm["spec"]["endpoints"]:
                auth = ep.get("authorization")
                want = ({"type": "Bearer", "credentials": {"name": api["name"], "key": api["metricsTokenKey"]}}
                        if api["protectMetrics"] else None)
                if auth != want:
                    problems.append(f"ServiceMonitor endpoint {ep.get('port')}: authorization {auth}, want {want}")
    if values["networkPolicy"]["enabled"] != any(d["kind"] == "NetworkPolicy" for d in docs):
        problems.append(f"networkPolicy.enabled is {values['networkPolicy']['enabled']}, the NetworkPolicy is "
                        f"{'missing' if values['networkPolicy']['enabled'] else 'there'}")
    return problems


def _advertised_host(sts, pod, namespace):
    """The advertised host of pod `pod` (the kubelet expands $(POD_NAME), $(POD_NAMESPACE))."""
    c = next(c for c in sts["spec"]["template"]["spec"]["containers"] if c["name"] == "chordnet")
    advertise = next(e["value"] for e in c["env"] if e["name"] == "CHORDNET_NODE__ADVERTISE")
    return advertise.rsplit(":", 1)[0].replace("$(POD_NAME)", pod).replace("$(POD_NAMESPACE)", namespace)


def _tls_problems(values, docs, env, volumes, mounts):
    """security.tls: the three variables, the peer-tls volume and mount; with issuerRef.name
    either a csi-driver volume whose certificate names exactly each pod's own advertised host
    (certificates = perPod) or one cert-manager Certificate whose wildcard covers every pod's
    advertised host (shared)."""
    tls = values["security"]["tls"]
    problems = []
    certs = [d for d in docs if d["kind"] == "Certificate"]
    if not tls["enabled"]:
        for what, present in (("TLS variables", any(v in env for v in TLS_FILES)), ("volume peer-tls", "peer-tls" in volumes),
                              ("mount peer-tls", "peer-tls" in mounts), ("a Certificate", bool(certs))):
            if present:
                problems.append(f"security.tls.enabled is false, yet the release has {what}")
        return problems
    for var, file in TLS_FILES.items():
        if env.get(var, {}).get("value") != f"{TLS_DIR}/{file}":
            problems.append(f"{var} is {env.get(var)}, want {TLS_DIR}/{file!r}")
    if mounts.get("peer-tls", {}).get("mountPath") != TLS_DIR:
        problems.append(f"volume peer-tls is mounted at {mounts.get('peer-tls', {}).get('mountPath')}, want {TLS_DIR}")
    sts = _first(docs, "StatefulSet")
    fullname = sts["metadata"]["name"]
    want_issuer = {k: tls["issuerRef"][k] for k in ("name", "kind", "group")}
    if tls["issuerRef"]["name"] and tls["certificates"] == "perPod":
        return problems + _per_pod_problems(tls, sts, certs, volumes, want_issuer)
    secret_name = tls["secretName"] or f"{fullname}-peer-tls"
    secret = volumes.get("peer-tls", {}).get("secret")
    want_items = [{"key": f, "path": f} for f in TLS_FILES.values()]
    if not secret or secret.get("secretName") != secret_name or secret.get("items") != want_items:
        problems.append(f"volume peer-tls is {volumes.get('peer-tls')}, want Secret {secret_name} with {want_items}")
    if not tls["issuerRef"]["name"]:
        if certs:
            problems.append("security.tls.secretName is set, yet the chart renders a Certificate")
        return problems
    if len(certs) != 1:
        return problems + [f"{len(certs)} Certificates with security.tls.certificates = shared, want 1"]
    spec = certs[0]["spec"]
    if spec.get("secretName") != secret_name:
        problems.append(f"the Certificate writes {spec.get('secretName')}, the peers mount {secret_name}")
    if spec.get("issuerRef") != want_issuer:
        problems.append(f"the Certificate's issuerRef is {spec.get('issuerRef')}, want {want_issuer}")
    if not {"server auth", "client auth"} <= set(spec.get("usages", [])):
        problems.append(f"the Certificate's usages {spec.get('usages')} lack server auth or client auth (mutual TLS)")
    # Every pod's advertised host must match a DNS name (a wildcard covers one label).
    host = _advertised_host(sts, f"{fullname}-0", NAMESPACE)
    names = spec.get("dnsNames", [])
    covered = any(n == host or (n.startswith("*.") and host.split(".", 1)[1] == n[2:] and "*" not in host) for n in names)
    if not covered:
        problems.append(f"the Certificate's dnsNames {names} do not name the advertised host {host}")
    return problems


def _expand_csi(value, pod, namespace):
    """What the csi-driver makes of an attribute for a pod (it expands ${POD_NAME} and
    ${POD_NAMESPACE}; the kubelet's $(VAR) stays literal in volume attributes)."""
    return value.replace("${POD_NAME}", pod).replace("${POD_NAMESPACE}", namespace)


def _per_pod_problems(tls, sts, certs, volumes, want_issuer):
    """certificates = perPod: no Certificate object; a csi-driver volume whose certificate has
    exactly one DNS name, each pod's own advertised host (checked for two pods and two
    namespaces, so a constant or a wildcard cannot pass), the issuer, both TLS usages, and the
    renewal settings of security.tls."""
    problems = []
    if certs:
        problems.append("security.tls.certificates is perPod, yet the chart renders a Certificate (a shared one)")
    csi = volumes.get("peer-tls", {}).get("csi")
    if not csi:
        return problems + [f"volume peer-tls is {volumes.get('peer-tls')}, want a {CSI_DRIVER} CSI volume (perPod)"]
    attrs = csi.get("volumeAttributes", {})
    got_issuer = {k: attrs.get(f"{CSI_DRIVER}/issuer-{k}") for k in ("name", "kind", "group")}
    if got_issuer != want_issuer:
        problems.append(f"the csi-driver volume's issuer is {got_issuer}, want {want_issuer}")
    fullname = sts["metadata"]["name"]
    for pod, ns in ((f"{fullname}-0", NAMESPACE), (f"{fullname}-2", "other-ns")):
        host = _advertised_host(sts, pod, ns)
        names = [_expand_csi(n, pod, ns) for n in attrs.get(f"{CSI_DRIVER}/dns-names", "").split(",") if n]
        if names != [host]:
            problems.append(f"pod {pod} in {ns}: the csi-driver certificate's DNS names are {names}, want exactly its "
                            f"advertised host [{host!r}]")
        if any("*" in n or "$" in n for n in names):
            problems.append(f"pod {pod}: DNS names {names} keep a wildcard or an unexpanded variable")
    usages = {u.strip() for u in attrs.get(f"{CSI_DRIVER}/key-usages", "").split(",")}
    if not {"server auth", "client auth"} <= usages:
        problems.append(f"the csi-driver key usages {sorted(usages)} lack server auth or client auth (mutual TLS)")
    for key, want in (("duration", tls["duration"]), ("renew-before", tls["renewBefore"])):
        if attrs.get(f"{CSI_DRIVER}/{key}") != want:
            problems.append(f"the csi-driver {key} is {attrs.get(f'{CSI_DRIVER}/{key}')!r}, want {want!r}")
    return problems


def _selects(selector, labels):
    return all(labels.get(k) == v for k, v in (selector or {}).get("matchLabels", {}).items()) and \
        not (selector or {}).get("matchExpressions")


def _admits(rule, labels, namespace_selector_ok=True):
    """Whether an ingress rule's `from` admits a pod with these labels in the policy's namespace."""
    sources = rule.get("from")
    if not sources:
        return True
    for src in sources:
        if "ipBlock" in src:
            continue
        if "namespaceSelector" in src and src["namespaceSelector"] != {} and not namespace_selector_ok:
            continue
        if _selects(src.get("podSelector", {}), labels):
            return True
    return False


def _ports(rule, container_ports):
    named = {p["name"]: p["containerPort"] for p in container_ports}
    if not rule.get("ports"):
        return set(named.values())
    return {named.get(p["port"], p["port"]) for p in rule["ports"]}


def network_policy_problems(docs):
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    if not policies:
        return []
    problems = []
    sts = _first(docs, "StatefulSet")
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    c = next(c for c in sts["spec"]["template"]["spec"]["containers"] if c["name"] == "chordnet")
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    for np in policies:
        spec = np["spec"]
        if not _selects(spec.get("podSelector"), pod_labels):
            problems.append(f"NetworkPolicy {np['metadata']['name']} does not select the peers")
            continue
        rules = spec.get("ingress", [])
        for rule in rules:
            if ports["peer"] not in _ports(rule, c.get("ports", [])):
                continue
            sources = rule.get("from") or []
            peers_only = sources and all(
                set(s) == {"podSelector"} and s["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/component") == "peer"
                and _selects(s["podSelector"], pod_labels) for s in sources)
            if not peers_only:
                problems.append(f"NetworkPolicy {np['metadata']['name']} admits {sources or 'any source'} to the peer port")
        if not any(_admits(r, pod_labels) and ports["peer"] in _ports(r, c.get("ports", [])) for r in rules):
            problems.append("the NetworkPolicy keeps the peers from reaching each other's peer port")
        test_labels = {k: v for k, v in pod_labels.items() if k in ("app.kubernetes.io/name", "app.kubernetes.io/instance")}
        test_labels["app.kubernetes.io/component"] = "test"
        if not any(_admits(r, test_labels) and ports["http"] in _ports(r, c.get("ports", [])) for r in rules):
            problems.append("the NetworkPolicy keeps the helm test pod from the API port")
        prometheus = {"app.kubernetes.io/name": "prometheus"}
        if not any(_admits(r, prometheus) and ports["http"] in _ports(r, c.get("ports", [])) for r in rules):
            problems.append("the NetworkPolicy keeps Prometheus (app.kubernetes.io/name: prometheus) from /metrics")
    return problems
