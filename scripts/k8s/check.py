#!/usr/bin/env python3
"""The Python half of scripts/k8s-check.sh (run it with the venv that script makes: it needs
helm-python-sdk and PyYAML).

    check.py render OUT_DIR            render the chart with its defaults and with every
                                       helm/chordnet/ci/*.yaml; one multi-document file per case
    check.py lint KUBE_VERSION...      `helm lint --strict` of every case, for each Kubernetes version
    check.py reject                    values the chart must refuse (schema, template checks)
    check.py base [--check]            write deploy/base from the chart's defaults (or diff against it)
    check.py consistency FILE...       invariants of the rendered StatefulSets (seeds, advertise,
                                       headless Service, probes, security, grace period, $(VAR)
                                       references, OTEL_* variables)
    check.py tracing                   the OTEL_* variables follow tracing.* in every chart case
                                       (and variants): all of them exactly when an endpoint is set;
                                       the template's fallbacks (--reuse-values) equal values.yaml
    check.py tracing-env on|off FILE...  rendered objects export traces (on) or set no OTEL_* (off)
    check.py security                  security.* in every chart case (and variants): Secret
                                       volumes, *_FILE variables, test-pod tokens, ServiceMonitor
                                       authorization, NetworkPolicy (scripts/k8s/chart_security.py)
    check.py sync                      chart copies of the dashboard and rules, appVersion
    check.py config-toml OUT           the chart's default config.toml
    check.py metric-names SCRAPE       every chordnet_* name used by the dashboard and the alerts
                                       is exposed in SCRAPE (a /metrics text), except PENDING ones
    check.py promql PROMETHEUS_URL     evaluate every PromQL expression of the dashboard and the
                                       alerts (they must not error), and the healthy-ring facts
"""

import contextlib
import difflib
import json
import re
import shutil
import sys
import tempfile
import tomllib
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

import chart_security

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "chordnet"
DASHBOARD = ROOT / "deploy" / "grafana" / "chordnet-dashboard.json"
RULES = ROOT / "deploy" / "prometheus" / "chordnet-rules.yaml"
BASE = ROOT / "deploy" / "base"
RELEASE = "chordnet"
NAMESPACE = "chordnet"

# Metrics the dashboard or the alerts may use before the binary exposes them (a warning, not a
# failure); empty now that chordnet_replica_deficit exists.
PENDING_METRICS = set()
# Labelled families with no series until something happens (a healthy ring shows none): not in
# a scrape of healthy peers, so they are checked against the binary's source instead.
EVENT_ONLY_METRICS = {
    "chordnet_foreign_ring_seen": "one series per foreign ring id a peer met",
}


def fail(msg):
    print(f"FAIL: {msg}")
    sys.exit(1)


def cases():
    """[(name, values)]: the defaults and every ci/*.yaml values file."""
    out = [("defaults", {})]
    for f in sorted((CHART / "ci").glob("*.yaml")):
        out.append((f.stem, yaml.safe_load(f.read_text()) or {}))
    return out


def render(values, *, name=RELEASE, namespace=NAMESPACE, tests=True, chart_dir=CHART):
    """{template path: rendered text} without NOTES.txt and empty documents."""
    from helm_python import chart as helm_chart

    with helm_chart.Chart.load(str(chart_dir)) as chart:
        out = chart.render(values=values, name=name, namespace=namespace, is_install=True)
    result = {}
    for path, text in sorted(out.items()):
        if path.endswith("NOTES.txt") or (not tests and "/templates/tests/" in path):
            continue
        if any(doc for doc in yaml.safe_load_all(text)):
            result[path] = text.strip("\n") + "\n"
    return result


def cmd_render(out_dir):
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, values in cases():
        manifests = render(values)
        docs = []
        for path, text in manifests.items():
            docs.append(f"# Source: {path}\n{text}")
        target = out_dir / f"chart-{name}.yaml"
        target.write_text("---\n".join(docs))
        kinds = [d["kind"] for t in manifests.values() for d in yaml.safe_load_all(t) if d]
        print(f"  rendered {name}: {len(kinds)} objects ({', '.join(sorted(set(kinds)))}) -> {target.name}")


def cmd_lint(*kube_versions):
    from helm_python import chart as helm_chart

    bad = 0
    for version in kube_versions:
        for name, values in cases():
            report = helm_chart.lint(str(CHART), values=values, strict=True, kube_version=version)
            problems = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2]
            problems += [{"severity": 3, "path": "", "error": e} for e in report.get("errors", []) if e]
            infos = [m for m in report.get("messages", []) if m.get("severity", 0) < 2]
            for m in problems:
                print(f"  lint {name} (Kubernetes {version}): {m.get('path')}: {m.get('error')}")
            bad += len(problems)
            note = f" (info: {'; '.join(m['error'] for m in infos)})" if infos else ""
            if not problems:
                print(f"  lint --strict {name}, Kubernetes {version}: ok{note}")
    if bad:
        fail(f"helm lint --strict found {bad} problem(s)")


REJECT = [
    ("replicaCount as a string", {"replicaCount": "3"}, "want integer"),
    ("no peers", {"replicaCount": 0}, "minimum"),
    ("unknown top-level value", {"replicas": 3}, "additional properties"),
    ("misspelt ring key", {"config": {"ring": {"stabilise_interval": "1s"}}}, "additional properties"),
    ("unknown config section", {"config": {"tracing": {"endpoint": "x"}}}, "additional properties"),
    ("bad log format", {"config": {"log": {"format": "xml"}}}, "log/format"),
    ("bad duration", {"config": {"ring": {"rpc_timeout": "fast"}}}, "rpc_timeout"),
    ("bad size", {"config": {"files": {"max_file_size": "lots"}}}, "max_file_size"),
    ("bad anti-affinity preset", {"podAntiAffinity": "maybe"}, "podAntiAffinity"),
    ("leave not shorter than grace", {"config": {"ring": {"leave_timeout": "30s"}}}, "terminationGracePeriodSeconds"),
    ("leave in minutes over grace", {"config": {"ring": {"leave_timeout": "2m"}}, "terminationGracePeriodSeconds": 100},
     "terminationGracePeriodSeconds"),
    ("unknown tracing value", {"tracing": {"insecure": True}}, "additional properties"),
    ("tracing endpoint without a scheme", {"tracing": {"endpoint": "otel-collector:4317"}}, "tracing/endpoint"),
    ("https tracing endpoint (the peer has no TLS)", {"tracing": {"endpoint": "https://otlp.example.com"}}, "tracing/endpoint"),
    ("bad OTLP protocol", {"tracing": {"protocol": "http/json"}}, "tracing/protocol"),
    ("bad sampler", {"tracing": {"sampler": "ratio"}}, "tracing/sampler"),
    ("sampler argument over 1", {"tracing": {"samplerArg": "1.5"}}, "tracing/samplerArg"),
    ("sampler argument as a number", {"tracing": {"samplerArg": 0.01}}, "want string"),
    ("OTLP headers not key=value", {"tracing": {"headers": "Bearer abc"}}, "tracing/headers"),
    ("headers and headersSecret", {"tracing": {"headers": "a=b", "headersSecret": {"name": "otlp", "key": "h"}}},
     "choose one"),
    ("resource attribute with a comma", {"tracing": {"resourceAttributes": {"team": "a,b"}}}, "resourceAttributes"),
    ("resource attribute key with =", {"tracing": {"resourceAttributes": {"a=b": "c"}}}, "invalid propertyName"),
    ("zero export time-out", {"tracing": {"timeout": 0}}, "tracing/timeout"),
    ("unknown transport kind", {"transport": {"kind": "udp"}}, "transport/kind"),
    ("unknown transport value", {"transport": {"kind": "grpc", "tls": True}}, "additional properties"),
    ("unknown security value", {"security": {"tls": {"name": "certs"}}}, "additional properties"),
    ("unknown ring secret value", {"security": {"ringSecret": {"name": "rs", "path": "/keys"}}}, "additional properties"),
    ("ring secret name not a DNS name", {"security": {"ringSecret": {"name": "Ring_Secret"}}}, "ringSecret/name"),
    ("API tokens key with a slash", {"security": {"apiTokens": {"name": "tokens", "key": "a/b"}}}, "apiTokens/key"),
    ("protectMetrics as a string", {"security": {"apiTokens": {"name": "tokens", "protectMetrics": "yes"}}}, "want boolean"),
    ("protectMetrics without API tokens", {"security": {"apiTokens": {"protectMetrics": True}}},
     "security.apiTokens.name is empty"),
    ("tokens file in config.api", {"config": {"api": {"tokens_file": "/tokens"}}}, "additional properties"),
    ("TLS without a source", {"security": {"tls": {"enabled": True}}}, "exactly one of security.tls.issuerRef.name"),
    ("TLS with both sources", {"security": {"tls": {"enabled": True, "issuerRef": {"name": "ca"}, "secretName": "s"}}},
     "exactly one of security.tls.issuerRef.name"),
    ("TLS with the gRPC probe", {"transport": {"kind": "grpc", "grpcReadinessProbe": True},
                                 "security": {"tls": {"enabled": True, "secretName": "s"}}}, "gRPC probe"),
    ("TLS issuer of an unknown kind", {"security": {"tls": {"enabled": True, "issuerRef": {"name": "ca", "kind": "Vault"}}}},
     "tls/issuerRef/kind"),
    ("TLS with the NATS transport", {"transport": {"kind": "nats"}, "security": {"tls": {"enabled": True, "secretName": "s"}}},
     "transport.kind nats"),
    ("unknown TLS certificates mode", {"security": {"tls": {"enabled": True, "issuerRef": {"name": "ca"}, "certificates": "wildcard"}}},
     "tls/certificates"),
    ("zero API connections", {"config": {"api": {"max_connections": 0}}}, "max_connections"),
]


def cmd_reject():
    from helm_python import errors

    for what, values, expect in REJECT:
        try:
            render(values)
        except (errors.HelmValuesError, errors.HelmRenderError) as e:
            if expect not in str(e):
                fail(f"values with {what} were refused, but the message lacks {expect!r}: {e}")
            first = " ".join(str(e).split())[-110:]
            print(f"  refused {what}: ...{first}")
            continue
        fail(f"the chart accepted values with {what}: {values}")


HELM_ONLY_LABEL = re.compile(r"^\s*(helm\.sh/chart|app\.kubernetes\.io/managed-by):.*\n", re.M)
BASE_HEADER = (
    "# Generated from helm/chordnet (default values, release name chordnet) by\n"
    "# `scripts/k8s/check.py base`; do not edit: change the chart and regenerate.\n"
)


def base_files():
    manifests = render({}, tests=False)
    files = {}
    for path, text in manifests.items():
        text = HELM_ONLY_LABEL.sub("", text)
        files[Path(path).name] = BASE_HEADER + text
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": sorted(files),
        "labels": [{"pairs": {"app.kubernetes.io/managed-by": "kustomize"}, "includeSelectors": False}],
    }
    files["kustomization.yaml"] = BASE_HEADER + yaml.safe_dump(kustomization, sort_keys=False)
    return files


def cmd_base(check=False):
    wanted = base_files()
    present = {p.name: p.read_text() for p in BASE.glob("*.yaml")} if BASE.exists() else {}
    if not check:
        BASE.mkdir(parents=True, exist_ok=True)
        for name in set(present) - set(wanted):
            (BASE / name).unlink()
        for name, text in wanted.items():
            (BASE / name).write_text(text)
        print(f"  wrote {len(wanted)} files to {BASE.relative_to(ROOT)}")
        return
    diff = []
    for name in sorted(set(wanted) | set(present)):
        a, b = present.get(name, ""), wanted.get(name, "")
        if a != b:
            diff += difflib.unified_diff(a.splitlines(True), b.splitlines(True), f"deploy/base/{name}", f"{name} (from the chart)")
    if diff:
        sys.stdout.writelines(diff)
        fail("deploy/base differs from the chart's defaults: run scripts/k8s/check.py base")
    print(f"  deploy/base equals the chart's default objects ({len(wanted)} files)")


def duration_seconds(text):
    """Seconds of a humantime duration such as "20s", "1m 30s", "500ms"."""
    units = {}
    for factor, names in (
        (1e-9, "ns nsec nanos"), (1e-6, "us µs usec micros"), (1e-3, "ms msec millis"),
        (1, "s sec secs second seconds"), (60, "m min mins minute minutes"),
        (3600, "h hr hrs hour hours"), (86400, "d day days"), (604800, "w week weeks"),
    ):
        units.update(dict.fromkeys(names.split(), factor))
    parts = re.findall(r"(\d+)\s*([a-zµ]+)", text)
    if not parts or re.sub(r"(\d+)\s*([a-zµ]+)|\s", "", text):
        raise ValueError(f"not a duration: {text!r}")
    return sum(int(n) * units[u] for n, u in parts)


def load_docs(path):
    return [d for d in yaml.safe_load_all(Path(path).read_text()) if d]


def matches(selector, labels):
    return all(labels.get(k) == v for k, v in (selector or {}).items())


def check_objects(path):
    """Invariants a chordnet deployment must keep, whichever way it was rendered."""
    docs = load_docs(path)
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    problems = []
    sets = by_kind.get("StatefulSet", [])
    if len(sets) != 1:
        return [f"expected one StatefulSet, found {len(sets)}"]
    sts = sets[0]
    name, spec = sts["metadata"]["name"], sts["spec"]
    pod = spec["template"]
    pod_labels = pod["metadata"].get("labels", {})
    pspec = pod["spec"]
    replicas = spec.get("replicas", 1)
    if spec.get("podManagementPolicy") != "Parallel":
        problems.append("podManagementPolicy is not Parallel")
    if not matches(spec["selector"].get("matchLabels"), pod_labels):
        problems.append("the StatefulSet's selector does not match its pod labels")
    if pspec.get("enableServiceLinks") is not False:
        problems.append("enableServiceLinks is not false (service links put CHORDNET_* variables into the environment)")
    containers = [c for c in pspec["containers"] if c["name"] == "chordnet"]
    if len(containers) != 1:
        return problems + ["no container named chordnet"]
    c = containers[0]
    env = {e["name"]: e for e in c.get("env", [])}
    problems += env_reference_problems(c.get("env", []))
    problems += tracing_problems(c.get("env", []), name)
    for var, field in (("POD_NAME", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace")):
        if env.get(var, {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") != field:
            problems.append(f"{var} does not come from the downward API ({field})")
    advertise = env.get("CHORDNET_NODE__ADVERTISE", {}).get("value", "")
    seeds = env.get("CHORDNET_RING__SEEDS", {}).get("value", "")
    headless = spec.get("serviceName")
    peer_port = next((p["containerPort"] for p in c.get("ports", []) if p["name"] == "peer"), None)
    m = re.fullmatch(r"\$\(POD_NAME\)\.([a-z0-9-]+)\.\$\(POD_NAMESPACE\)\.svc\.([a-z0-9.-]+):(\d+)", advertise)
    nats = env.get("CHORDNET_TRANSPORT__KIND", {}).get("value") == "nats"
    if nats:
        # A NATS peer's address is its subject: chordnet.<ring>.peer.<pod name>.
        ring = env.get("CHORDNET_NATS__RING_NAME", {}).get("value", "")
        if advertise != f"chordnet.{ring}.peer.$(POD_NAME)":
            problems.append(f"CHORDNET_NODE__ADVERTISE {advertise!r} is not chordnet.<nats ring name>.peer.$(POD_NAME)")
        wanted = [advertise.replace("$(POD_NAME)", f"{name}-{i}") for i in range(replicas)]
        if (seeds.split(",") if seeds else []) != wanted:
            problems.append(f"CHORDNET_RING__SEEDS {seeds!r} differs from the advertised subjects: want {','.join(wanted)}")
        if not env.get("CHORDNET_NATS__URL", {}).get("value"):
            problems.append("transport.kind nats without CHORDNET_NATS__URL")
    elif not m:
        problems.append(f"CHORDNET_NODE__ADVERTISE {advertise!r} is not $(POD_NAME).<headless>.$(POD_NAMESPACE).svc.<domain>:<port>")
    else:
        if m.group(1) != headless:
            problems.append(f"the advertised address uses Service {m.group(1)}, the StatefulSet's serviceName is {headless}")
        if int(m.group(3)) != peer_port:
            problems.append(f"the advertised port {m.group(3)} is not the container's peer port {peer_port}")
        wanted = [advertise.replace("$(POD_NAME)", f"{name}-{i}") for i in range(replicas)]
        got = seeds.split(",") if seeds else []
        if got != wanted:
            problems.append(
                f"CHORDNET_RING__SEEDS lists {len(got)} peers but there are {replicas} replicas, or differs from the "
                f"advertised addresses: want {','.join(wanted)}"
            )
    services = {s["metadata"]["name"]: s for s in by_kind.get("Service", [])}
    hs = services.get(headless)
    if not hs:
        problems.append(f"no Service {headless} (the StatefulSet's serviceName)")
    else:
        if hs["spec"].get("clusterIP") != "None":
            problems.append(f"Service {headless} is not headless")
        if hs["spec"].get("publishNotReadyAddresses") is not True:
            problems.append(f"Service {headless} does not publish not-ready addresses (joining peers could not find each other)")
        if not matches(hs["spec"].get("selector"), pod_labels):
            problems.append(f"Service {headless} does not select the peers")
        if peer_port not in [p.get("port") for p in hs["spec"].get("ports", [])]:
            problems.append(f"Service {headless} lacks the peer port")
    api = [s for n, s in services.items() if n != headless and matches(s["spec"].get("selector"), pod_labels)]
    if not api:
        problems.append("no API Service selects the peers")
    probes = {k: c.get(k, {}).get("httpGet", {}) for k in ("startupProbe", "readinessProbe", "livenessProbe")}
    kind = env.get("CHORDNET_TRANSPORT__KIND", {}).get("value")
    if kind not in ("http", "grpc", "nats"):
        problems.append(f"CHORDNET_TRANSPORT__KIND is {kind!r}, not http, grpc or nats")
    grpc_probe = c.get("readinessProbe", {}).get("grpc")
    if grpc_probe is not None:
        # Kubernetes' gRPC probe asks grpc.health.v1, which only a gRPC peer port serves.
        if kind != "grpc" or grpc_probe.get("port") != peer_port or "httpGet" in c["readinessProbe"]:
            problems.append(f"readinessProbe is a gRPC probe of port {grpc_probe.get('port')} with transport {kind}: "
                            f"only the peer port ({peer_port}) of a grpc peer serves grpc.health.v1")
        del probes["readinessProbe"]
    for probe, path_ in (("startupProbe", "/healthz"), ("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        if probe in probes and (probes[probe].get("path") != path_ or probes[probe].get("port") not in ("http", 8080)):
            problems.append(f"{probe} is not GET {path_} on the API port")
    psc, csc = pspec.get("securityContext", {}), c.get("securityContext", {})
    merged = {**psc, **csc}
    if merged.get("runAsNonRoot") is not True or not merged.get("runAsUser"):
        problems.append("the peer may run as root")
    if csc.get("readOnlyRootFilesystem") is not True:
        problems.append("the root filesystem is writable")
    if csc.get("allowPrivilegeEscalation") is not False:
        problems.append("privilege escalation is allowed")
    if "ALL" not in csc.get("capabilities", {}).get("drop", []):
        problems.append("capabilities are not dropped")
    if merged.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        problems.append("no RuntimeDefault seccomp profile")
    mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
    claims = {t["metadata"]["name"] for t in spec.get("volumeClaimTemplates", [])}
    volumes = {v["name"] for v in pspec.get("volumes", [])}
    for mount in ("/data", "/shared", "/etc/chordnet"):
        if mount not in mounts or mounts[mount] not in volumes | claims:
            problems.append(f"nothing is mounted at {mount}")
    # The graceful leave must fit in the grace period.
    config_map = next((v["configMap"]["name"] for v in pspec.get("volumes", []) if v["name"] == mounts.get("/etc/chordnet") and "configMap" in v), None)
    cms = {cm["metadata"]["name"]: cm for cm in by_kind.get("ConfigMap", [])}
    if config_map not in cms:
        problems.append(f"ConfigMap {config_map} (the config volume) is missing")
    else:
        try:
            toml = tomllib.loads(cms[config_map]["data"]["config.toml"])
        except (KeyError, tomllib.TOMLDecodeError) as e:
            problems.append(f"ConfigMap {config_map}: config.toml: {e}")
            toml = {}
        leave = env.get("CHORDNET_RING__LEAVE_TIMEOUT", {}).get("value") or toml.get("ring", {}).get("leave_timeout", "20s")
        grace = pspec.get("terminationGracePeriodSeconds", 30)
        if grace <= duration_seconds(leave):
            problems.append(f"terminationGracePeriodSeconds {grace} is not longer than the leave timeout {leave}")
        overlap = [f"{s}.{k}" for s, body in toml.items() if isinstance(body, dict) for k in body
                   if f"CHORDNET_{s.upper()}__{k.upper()}" in env]
        if overlap:
            print(f"  note: {Path(path).name}: environment overrides config.toml keys {', '.join(overlap)}")
        if "checksum/config" not in pod["metadata"].get("annotations", {}):
            problems.append("no checksum/config annotation (peers would not restart on a configuration change)")
    for pdb in by_kind.get("PodDisruptionBudget", []):
        if pdb["spec"].get("maxUnavailable") != 1:
            problems.append("the PodDisruptionBudget allows more than one peer down")
    problems += chart_security.secret_file_problems(pspec, c)
    problems += chart_security.network_policy_problems(docs)
    return problems


REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def env_reference_problems(env_list):
    """$(VAR) in an env value is expanded only when VAR is defined earlier in the list; otherwise
    Kubernetes leaves the text as it is."""
    problems, seen = [], set()
    for e in env_list:
        for ref in dict.fromkeys(REF.findall(str(e.get("value", "")).replace("$$", ""))):
            if ref not in seen:
                problems.append(f"env {e['name']} refers to $({ref}), which is not defined before it")
        seen.add(e["name"])
    return problems


SAMPLERS = {"always_on", "always_off", "traceidratio", "parentbased_always_on", "parentbased_always_off",
            "parentbased_traceidratio"}


def otel_env(env_list):
    return {e["name"]: e for e in env_list if e["name"].startswith("OTEL_")}


def tracing_problems(env_list, sts_name):
    """The OTEL_* variables of the peer container, if any, make a working trace export."""
    otel = otel_env(env_list)
    if not otel:
        return []
    problems = []
    value = {k: e.get("value") for k, e in otel.items()}
    endpoint = value.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or value.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if not endpoint:
        return [f"OTEL_* variables ({', '.join(sorted(otel))}) but no endpoint: the peer would export nothing"]
    if not re.fullmatch(r"http://[^\s,]+", endpoint):
        problems.append(f"OTLP endpoint {endpoint!r} is not an http:// URL (the peer has no TLS)")
    if value.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf") not in ("http/protobuf", "grpc"):
        problems.append(f"OTEL_EXPORTER_OTLP_PROTOCOL {value['OTEL_EXPORTER_OTLP_PROTOCOL']!r} is neither http/protobuf nor grpc")
    sampler = value.get("OTEL_TRACES_SAMPLER")
    if sampler is not None and sampler not in SAMPLERS:
        problems.append(f"OTEL_TRACES_SAMPLER {sampler!r} is not one of {', '.join(sorted(SAMPLERS))}")
    arg = value.get("OTEL_TRACES_SAMPLER_ARG")
    if arg is not None:
        try:
            ok = 0 <= float(arg) <= 1
        except ValueError:
            ok = False
        if not ok:
            problems.append(f"OTEL_TRACES_SAMPLER_ARG {arg!r} is not a number from 0 to 1")
    timeout = value.get("OTEL_EXPORTER_OTLP_TIMEOUT")
    if timeout is not None and not re.fullmatch(r"[1-9][0-9]*", timeout):
        problems.append(f"OTEL_EXPORTER_OTLP_TIMEOUT {timeout!r} is not a positive number of milliseconds")
    headers = otel.get("OTEL_EXPORTER_OTLP_HEADERS")
    if headers and "value" not in headers and "secretKeyRef" not in headers.get("valueFrom", {}):
        problems.append("OTEL_EXPORTER_OTLP_HEADERS comes neither from a value nor from a Secret")
    attrs = value.get("OTEL_RESOURCE_ATTRIBUTES")
    if attrs is not None:
        pairs = [p.split("=", 1) for p in attrs.split(",")] if attrs else []
        keys = [p[0].strip() for p in pairs]
        if any(len(p) != 2 or not p[0].strip() for p in pairs):
            problems.append(f"OTEL_RESOURCE_ATTRIBUTES {attrs!r} is not a list of key=value")
        elif len(set(keys)) != len(keys):
            problems.append(f"OTEL_RESOURCE_ATTRIBUTES {attrs!r} repeats a key")
        elif dict(pairs).get("k8s.statefulset.name", sts_name) != sts_name:
            problems.append(f"OTEL_RESOURCE_ATTRIBUTES names StatefulSet {dict(pairs)['k8s.statefulset.name']}, not {sts_name}")
    return problems


def cmd_consistency(*paths):
    bad = False
    for path in paths:
        problems = check_objects(path)
        for p in problems:
            print(f"  {Path(path).name}: {p}")
        bad |= bool(problems)
        if not problems:
            print(f"  {Path(path).name}: ok")
    if bad:
        fail("rendered objects break the deployment's invariants")


def deep_merge(base, over):
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def peer_container(docs):
    sts = next(d for d in docs if d["kind"] == "StatefulSet")
    c = next(c for c in sts["spec"]["template"]["spec"]["containers"] if c["name"] == "chordnet")
    return sts, c


def expected_tracing(values, env_list, sts_name):
    """Problems of the OTEL_* variables of one render against its tracing.* values."""
    t = values["tracing"]
    otel = otel_env(env_list)
    names = [e["name"] for e in env_list]
    if not t["endpoint"]:
        extra = sorted(otel) + (["NODE_NAME"] if "NODE_NAME" in names else [])
        return [f"tracing.endpoint is empty, yet the peer gets {', '.join(extra)}"] if extra else []
    problems = []
    want = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": t["endpoint"],
        "OTEL_EXPORTER_OTLP_PROTOCOL": t["protocol"],
        "OTEL_EXPORTER_OTLP_TIMEOUT": str(t["timeout"]),
        "OTEL_SERVICE_NAME": t["serviceName"],
        "OTEL_TRACES_SAMPLER": t["sampler"],
    }
    if "traceidratio" in t["sampler"] and t["samplerArg"]:
        want["OTEL_TRACES_SAMPLER_ARG"] = t["samplerArg"]
    if not t["headersSecret"]["name"] and t["headers"]:
        want["OTEL_EXPORTER_OTLP_HEADERS"] = t["headers"]
    for var, v in want.items():
        got = otel.get(var, {}).get("value")
        if got != v:
            problems.append(f"{var} is {got!r}, want {v!r}")
    if t["headersSecret"]["name"]:
        ref = otel.get("OTEL_EXPORTER_OTLP_HEADERS", {}).get("valueFrom", {}).get("secretKeyRef")
        if ref != {"name": t["headersSecret"]["name"], "key": t["headersSecret"]["key"]}:
            problems.append(f"OTEL_EXPORTER_OTLP_HEADERS does not come from Secret key "
                            f"{t['headersSecret']['name']}/{t['headersSecret']['key']}: {ref}")
    expected = set(want) | {"OTEL_RESOURCE_ATTRIBUTES"} | ({"OTEL_EXPORTER_OTLP_HEADERS"} if t["headersSecret"]["name"] else set())
    if set(otel) != expected:
        problems.append(f"OTEL_* variables {sorted(otel)}, want {sorted(expected)}")
    attrs = dict(p.split("=", 1) for p in otel.get("OTEL_RESOURCE_ATTRIBUTES", {}).get("value", "").split(",") if p)
    wanted_attrs = {"k8s.statefulset.name": sts_name, "k8s.node.name": "$(NODE_NAME)", **t["resourceAttributes"]}
    if attrs != wanted_attrs:
        problems.append(f"OTEL_RESOURCE_ATTRIBUTES {attrs}, want {wanted_attrs}")
    node = next((e for e in env_list if e["name"] == "NODE_NAME"), {})
    if node.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") != "spec.nodeName":
        problems.append("NODE_NAME does not come from the downward API (spec.nodeName)")
    return problems + tracing_problems(env_list, sts_name) + env_reference_problems(env_list)


# Variants beyond the ci/ files: every tracing value set but the endpoint (still nothing), and
# the remaining combinations of headers and samplers.
TRACING_VARIANTS = [
    ("everything but the endpoint", {"tracing": {"headers": "a=b", "sampler": "always_on", "serviceName": "x",
                                                 "headersSecret": {"name": "", "key": "k"},
                                                 "resourceAttributes": {"team": "storage"}}}),
    ("endpoint only", {"tracing": {"endpoint": "http://otel-collector:4318"}}),
    ("traceidratio without an argument", {"tracing": {"endpoint": "http://collector.example.com", "sampler": "traceidratio",
                                                      "samplerArg": ""}}),
    ("parentbased_always_off, argument ignored", {"tracing": {"endpoint": "http://c:4317", "protocol": "grpc",
                                                              "sampler": "parentbased_always_off", "samplerArg": "0.5"}}),
]


@contextlib.contextmanager
def chart_without(key, block):
    """A copy of the chart whose values.yaml lacks the top-level key `key` (the text matching the
    regular expression `block`): what a release made by an older chart version has."""
    with tempfile.TemporaryDirectory() as tmp:
        old_chart = Path(tmp) / "chordnet"
        shutil.copytree(CHART, old_chart)
        text = (old_chart / "values.yaml").read_text()
        stripped = re.sub(block, "\n", text, flags=re.S)
        if key in (yaml.safe_load(stripped) or {}):
            fail(f"could not remove the {key} block from a copy of values.yaml")
        (old_chart / "values.yaml").write_text(stripped)
        yield old_chart


def cmd_tracing():
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    bad, on = False, 0
    for name, values in cases() + TRACING_VARIANTS:
        merged = deep_merge(defaults, values)
        docs = [d for t in render(values, tests=False).values() for d in yaml.safe_load_all(t) if d]
        sts, c = peer_container(docs)
        problems = expected_tracing(merged, c.get("env", []), sts["metadata"]["name"])
        for p in problems:
            print(f"  {name}: {p}")
        bad |= bool(problems)
        if not problems:
            n = len(otel_env(c.get("env", [])))
            on += bool(n)
            state = f"exports to {merged['tracing']['endpoint']} ({n} OTEL_* variables)" if n else "no OTEL_* variables"
            print(f"  {name}: {state}: ok")
    if on < 2:
        bad = True
        print(f"  only {on} case(s) turn tracing on: the ci/ files should exercise it")
    # `helm upgrade --reuse-values` of a release made by a chart version without tracing.* keeps
    # that version's defaults: the chart's fallbacks (chordnet.tracing) must equal values.yaml's.
    with chart_without("tracing", r"\n# -- Trace export.*?\n  resourceAttributes: \{\}\n") as old_chart:
        values = {"tracing": {"endpoint": "http://otel-collector:4318"}}
        envs = []
        for chart_dir in (CHART, old_chart):
            docs = [d for t in render(values, tests=False, chart_dir=chart_dir).values() for d in yaml.safe_load_all(t) if d]
            envs.append(peer_container(docs)[1].get("env", []))
        if envs[0] != envs[1]:
            bad = True
            new, old = otel_env(envs[0]), otel_env(envs[1])
            diff = [f"{k}: {old.get(k)} instead of {new.get(k)}" for k in sorted(set(new) | set(old)) if new.get(k) != old.get(k)]
            print("  --reuse-values from a chart without tracing.*: the chordnet.tracing fallbacks differ from "
                  f"values.yaml's defaults: {'; '.join(diff) or 'the order of the variables'}")
        else:
            print("  --reuse-values from a chart without tracing.*: the same variables (the fallbacks equal values.yaml)")
    if bad:
        fail("the OTEL_* variables do not follow tracing.*")


# Variants beyond the ci/ files: each Secret alone, metrics protected without a ServiceMonitor,
# a ServiceMonitor without protection, and no fsGroup (the files must then be world-readable).
SECURITY_VARIANTS = [
    ("ring secret only", {"security": {"ringSecret": {"name": "chordnet-ring", "key": "keys"}}}),
    ("API tokens only", {"security": {"apiTokens": {"name": "chordnet-api"}}, "serviceMonitor": {"enabled": True}}),
    ("metrics protected, no ServiceMonitor", {"security": {"apiTokens": {"name": "t", "protectMetrics": True}}}),
    ("keys named but no Secret names", {"security": {"ringSecret": {"key": "k"}, "apiTokens": {"key": "a", "testTokenKey": "b"}},
                                        "serviceMonitor": {"enabled": True}}),
    ("no fsGroup", {"security": {"ringSecret": {"name": "rs"}, "apiTokens": {"name": "t"}},
                    "podSecurityContext": {"runAsNonRoot": True, "runAsUser": 10001, "fsGroup": None}}),
    ("NetworkPolicy off", {"networkPolicy": {"enabled": False}, "security": {"apiTokens": {"name": "t"}}}),
    ("TLS from an existing Secret", {"security": {"tls": {"enabled": True, "secretName": "peer-certs"}}}),
    ("TLS via cert-manager (per pod), gRPC", {"transport": {"kind": "grpc"},
                                              "security": {"tls": {"enabled": True, "issuerRef": {"name": "ring-ca", "kind": "ClusterIssuer"}}}}),
    ("TLS via cert-manager, one shared wildcard", {"security": {"tls": {"enabled": True, "issuerRef": {"name": "ring-ca"},
                                                                        "certificates": "shared"}}}),
    ("TLS per pod, no fsGroup", {"security": {"tls": {"enabled": True, "issuerRef": {"name": "ring-ca"}, "duration": "24h",
                                                      "renewBefore": "8h"}},
                                 "podSecurityContext": {"runAsNonRoot": True, "runAsUser": 10001, "fsGroup": None}}),
    ("TLS per pod, other release names", {"fullnameOverride": "ring-a", "clusterDomain": "k8s.example",
                                          "security": {"tls": {"enabled": True, "issuerRef": {"name": "ring-ca"}}}}),
    ("TLS off with an issuer named", {"security": {"tls": {"issuerRef": {"name": "ring-ca"}}}}),
]


def cmd_security():
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    bad, counts = False, {"ring secret": 0, "API tokens": 0, "metrics protected": 0, "mutual TLS": 0}
    for name, values in cases() + SECURITY_VARIANTS:
        merged = deep_merge(defaults, values)
        docs = [d for t in render(values).values() for d in yaml.safe_load_all(t) if d]
        problems = chart_security.expected_security(merged, docs) + chart_security.network_policy_problems(docs)
        for p in problems:
            print(f"  {name}: {p}")
        bad |= bool(problems)
        if not problems:
            s = merged["security"]
            on = [w for w, v in (("ring secret", s["ringSecret"]["name"]), ("API tokens", s["apiTokens"]["name"]),
                                 ("metrics protected", s["apiTokens"]["protectMetrics"]),
                                 ("mutual TLS", s["tls"]["enabled"])) if v]
            for w in on:
                counts[w] += 1
            policy = "NetworkPolicy" if merged["networkPolicy"]["enabled"] else "no NetworkPolicy"
            print(f"  {name}: {', '.join(on) or 'no Secrets'}; {policy}: ok")
    thin = [w for w, n in counts.items() if n < 1 + (w != "metrics protected")]
    if thin:
        bad = True
        print(f"  too few cases with {', '.join(thin)}: the ci/ files should exercise them")
    # `helm upgrade --reuse-values` of a release made by a chart version without security.* keeps
    # that version's values: the chart's fallbacks (chordnet.security) must equal values.yaml's.
    with chart_without("security", r"\n# -- Peer authentication.*?\n    secretName: \"\"\n") as old_chart:
        values = {"security": {"ringSecret": {"name": "r"}, "apiTokens": {"name": "t", "protectMetrics": True}},
                  "serviceMonitor": {"enabled": True}}
        renders = [render(values, chart_dir=d) for d in (CHART, old_chart)]
        if renders[0] != renders[1]:
            bad = True
            diff = [k for k in renders[0] if renders[0][k] != renders[1].get(k)]
            print(f"  --reuse-values from a chart without security.*: {', '.join(diff)} differ (the chordnet.security "
                  "fallbacks are not values.yaml's defaults)")
        else:
            print("  --reuse-values from a chart without security.*: the same objects (the fallbacks equal values.yaml)")
    if bad:
        fail("the rendered objects do not follow security.*")


# nats.* and events.*: (name, values, {variable: value or None for absent}, mounted Secret items).
NATS_VARIANTS = [
    ("defaults: no broker", {}, {"CHORDNET_NATS__URL": None, "CHORDNET_EVENTS__ENABLED": None}, None),
    ("http ring publishing events", {"events": {"enabled": True, "stream": "ring-events"}, "nats": {"url": "nats://n:4222"}},
     {"CHORDNET_NATS__URL": "nats://n:4222", "CHORDNET_NATS__RING_NAME": "default", "CHORDNET_EVENTS__ENABLED": "true",
      "CHORDNET_EVENTS__STREAM": "ring-events", "CHORDNET_EVENTS__MAX_AGE": "7days", "CHORDNET_EVENTS__MAX_BYTES": "1GiB",
      "CHORDNET_TRANSPORT__KIND": "http", "CHORDNET_NATS__CREDENTIALS_FILE": None}, None),
    ("nats transport, creds file and token", {"transport": {"kind": "nats"}, "nats": {"ringName": "r1", "credentials":
     {"name": "nats-login", "credsKey": "user.creds", "tokenKey": "tok"}}},
     {"CHORDNET_NODE__ADVERTISE": "chordnet.r1.peer.$(POD_NAME)", "CHORDNET_NATS__RING_NAME": "r1",
      "CHORDNET_NATS__CREDENTIALS_FILE": "/var/run/chordnet/nats/creds", "CHORDNET_NATS__TOKEN_FILE": "/var/run/chordnet/nats/token",
      "CHORDNET_EVENTS__ENABLED": None}, ("nats-login", [("user.creds", "creds"), ("tok", "token")])),
    ("credentials but neither nats transport nor events", {"nats": {"credentials": {"name": "x", "tokenKey": "t"}}},
     {"CHORDNET_NATS__TOKEN_FILE": None}, None),
    ("nats transport, TLS to the broker with a client certificate",
     {"transport": {"kind": "nats"}, "nats": {"url": "tls://nats:4222", "tls": {"secretName": "nats-client-tls", "clientCertificate": True}}},
     {"CHORDNET_NATS__URL": "tls://nats:4222", "CHORDNET_NATS__TLS_CA_FILE": "/var/run/chordnet/nats-tls/ca.crt",
      "CHORDNET_NATS__TLS_CERT_FILE": "/var/run/chordnet/nats-tls/tls.crt",
      "CHORDNET_NATS__TLS_KEY_FILE": "/var/run/chordnet/nats-tls/tls.key"}, None),
    ("events, TLS to the broker (CA only)", {"events": {"enabled": True}, "nats": {"tls": {"secretName": "nats-ca"}}},
     {"CHORDNET_NATS__TLS_CA_FILE": "/var/run/chordnet/nats-tls/ca.crt", "CHORDNET_NATS__TLS_CERT_FILE": None,
      "CHORDNET_NATS__TLS_KEY_FILE": None}, None),
    ("broker TLS but nothing uses the broker", {"nats": {"tls": {"secretName": "nats-ca", "clientCertificate": True}}},
     {"CHORDNET_NATS__TLS_CA_FILE": None, "CHORDNET_NATS__TLS_CERT_FILE": None}, None),
]

# The nats-tls volume: the Secret's keys named by the TLS variables, read-only, a whole volume.
NATS_TLS_DIR = "/var/run/chordnet/nats-tls"


def nats_tls_problems(values, sts, c, env):
    want_secret = ((values.get("nats") or {}).get("tls") or {}).get("secretName")
    files = [env[k].rsplit("/", 1)[1] for k in ("CHORDNET_NATS__TLS_CA_FILE", "CHORDNET_NATS__TLS_CERT_FILE",
                                                 "CHORDNET_NATS__TLS_KEY_FILE") if env.get(k)]
    mounts = [m for m in c.get("volumeMounts", []) if m["name"] == "nats-tls"]
    volumes = [v for v in sts["spec"]["template"]["spec"].get("volumes", []) if v["name"] == "nats-tls"]
    if not files:
        return ["mounts the broker's TLS Secret though no variable names it"] if mounts or volumes else []
    problems = []
    if not mounts or mounts[0].get("readOnly") is not True or mounts[0]["mountPath"] != NATS_TLS_DIR \
            or mounts[0].get("subPath"):
        problems.append(f"the broker's TLS files are not a whole read-only volume at {NATS_TLS_DIR}: {mounts}")
    items = [(i["key"], i["path"]) for i in (volumes[0]["secret"].get("items", []) if volumes else [])]
    if not volumes or volumes[0]["secret"]["secretName"] != want_secret or items != [(f, f) for f in files]:
        problems.append(f"the nats-tls volume is not Secret {want_secret} with {files}: {volumes}")
    if any(not env[k].startswith(NATS_TLS_DIR + "/") for k in env if k.startswith("CHORDNET_NATS__TLS_") and env[k]):
        problems.append("a CHORDNET_NATS__TLS_* file outside the nats-tls volume")
    return problems


def cmd_nats():
    bad = False
    for name, values, want, secret in NATS_VARIANTS:
        docs = [d for t in render(values, tests=False).values() for d in yaml.safe_load_all(t) if d]
        sts, c = peer_container(docs)
        env = {e["name"]: e.get("value") for e in c.get("env", [])}
        problems = [f"{k} = {env.get(k)!r}, want {v!r}" for k, v in want.items() if env.get(k) != v]
        problems += nats_tls_problems(values, sts, c, env)
        mounts = [m for m in c.get("volumeMounts", []) if m["name"] == "nats-credentials"]
        volumes = [v for v in sts["spec"]["template"]["spec"].get("volumes", []) if v["name"] == "nats-credentials"]
        if secret is None and (mounts or volumes):
            problems.append("mounts the NATS credentials Secret though nothing uses it")
        if secret is not None:
            if not mounts or mounts[0].get("readOnly") is not True or mounts[0]["mountPath"] != "/var/run/chordnet/nats":
                problems.append(f"the NATS credentials are not mounted read-only at /var/run/chordnet/nats: {mounts}")
            items = [(i["key"], i["path"]) for i in (volumes[0]["secret"].get("items", []) if volumes else [])]
            if not volumes or volumes[0]["secret"]["secretName"] != secret[0] or items != secret[1]:
                problems.append(f"the NATS credentials volume is not Secret {secret[0]} with {secret[1]}: {volumes}")
        for p in problems:
            print(f"  {name}: {p}")
        if not problems:
            print(f"  {name}: ok")
        bad |= bool(problems)
    if bad:
        fail("the rendered objects do not follow nats.* and events.*")


def cmd_tracing_env(expect, *paths):
    bad = False
    for path in paths:
        sts, c = peer_container(load_docs(path))
        otel = otel_env(c.get("env", []))
        endpoint = any(otel.get(v, {}).get("value") for v in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
        if expect == "off" and otel:
            print(f"  {Path(path).name}: sets {', '.join(sorted(otel))}, but should export no traces")
            bad = True
        elif expect == "on" and not endpoint:
            print(f"  {Path(path).name}: sets no OTLP endpoint, but should export traces")
            bad = True
        else:
            print(f"  {Path(path).name}: " + (f"exports traces ({len(otel)} OTEL_* variables)" if otel else "no OTEL_* variables"))
    if bad:
        fail("trace export is not as expected")


def cmd_sync():
    ok = True
    for src, copy in ((DASHBOARD, CHART / "files" / "chordnet-dashboard.json"), (RULES, CHART / "files" / "chordnet-rules.yaml")):
        if not copy.exists() or src.read_bytes() != copy.read_bytes():
            print(f"  {copy.relative_to(ROOT)} differs from {src.relative_to(ROOT)}: cp {src.relative_to(ROOT)} {copy.relative_to(ROOT)}")
            ok = False
        else:
            print(f"  {copy.relative_to(ROOT)} == {src.relative_to(ROOT)}")
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    cargo = tomllib.loads((ROOT / "Cargo.toml").read_text())["package"]["version"]
    if str(chart["appVersion"]) != cargo:
        print(f"  Chart.yaml appVersion {chart['appVersion']} != Cargo.toml version {cargo}")
        ok = False
    else:
        print(f"  Chart.yaml appVersion == Cargo.toml version ({cargo})")
    dash = json.loads(DASHBOARD.read_text())
    for key in ("__inputs", "__requires"):
        if key in dash:
            print(f"  the dashboard has {key}: the Grafana sidecar cannot fill it in")
            ok = False
    names = [v["name"] for v in dash.get("templating", {}).get("list", [])]
    if dash.get("uid") != "chordnet-overview" or not {"datasource", "namespace", "pod"} <= set(names):
        print("  the dashboard must keep uid chordnet-overview and the variables datasource, namespace, pod")
        ok = False
    if not ok:
        fail("copies or versions out of sync")


def cmd_config_toml(out):
    manifests = render({})
    cm = next(d for t in manifests.values() for d in yaml.safe_load_all(t) if d and d["kind"] == "ConfigMap")
    Path(out).write_text(cm["data"]["config.toml"])


def dashboard_exprs():
    dash = json.loads(DASHBOARD.read_text())
    out = []

    def panels(ps):
        for p in ps:
            yield p
            yield from panels(p.get("panels", []))

    for p in panels(dash.get("panels", [])):
        for t in p.get("targets", []):
            if t.get("expr"):
                out.append((f"dashboard panel {p.get('title')!r} {t.get('refId')}", t["expr"]))
    for v in dash.get("templating", {}).get("list", []):
        q = v.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        if v.get("type") == "query" and isinstance(q, str):
            m = re.fullmatch(r"\s*label_values\((.+),\s*[a-zA-Z_]\w*\s*\)\s*", q)
            out.append((f"dashboard variable ${v['name']}", m.group(1) if m else q))
    return out


def rule_exprs():
    rules = yaml.safe_load(RULES.read_text())
    return [
        (f"rule {r.get('alert') or r.get('record')}", r["expr"])
        for g in rules["groups"]
        for r in g["rules"]
    ]


def substitute(expr):
    """Grafana's variables as a query of the dashboard would see them with 'All' selected."""
    expr = expr.replace("$__rate_interval", "1m").replace("${__rate_interval}", "1m")
    expr = re.sub(r"\$\{?__(interval|range)\}?", "1m", expr)
    return re.sub(r"\$\{?[A-Za-z_]\w*(:\w+)?\}?", ".*", expr)


def cmd_metric_names(scrape):
    exposed = set(re.findall(r"^# TYPE (\S+) ", Path(scrape).read_text(), re.M))
    used = {}
    for where, expr in dashboard_exprs() + rule_exprs():
        for name in re.findall(r"\bchordnet_[a-z0-9_]+", expr):
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            used.setdefault(base if base in exposed else name, set()).add(where.split(" ")[0])
    source = (ROOT / "src" / "metrics.rs").read_text()
    for n in sorted(set(used) & set(EVENT_ONLY_METRICS) - exposed):
        if f'"{n}"' not in source:
            fail(f"{n} is used by the {' and the '.join(sorted(used[n]))} but src/metrics.rs does not define it")
        print(f"  {n}: defined in src/metrics.rs, no series in a healthy ring ({EVENT_ONLY_METRICS[n]})")
        exposed = exposed | {n}
    missing = sorted(n for n in used if n not in exposed and n not in PENDING_METRICS)
    pending = sorted(n for n in used if n not in exposed and n in PENDING_METRICS)
    print(f"  {len(used)} metric names used by the dashboard and the alerts; {len(exposed)} chordnet families exposed")
    for n in pending:
        print(f"  WARN: {n} is used by the {' and the '.join(sorted(used[n]))} but not exposed yet (pending in the binary)")
    unused = sorted(n for n in exposed if n not in used)
    if unused:
        print(f"  note: exposed but not on the dashboard or in an alert: {', '.join(unused)}")
    if missing:
        fail(f"names used but not exposed by the peers (typo?): {', '.join(missing)}")


def query(url, expr):
    data = urllib.parse.urlencode({"query": expr}).encode()
    req = urllib.request.Request(f"{url}/api/v1/query", data=data)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return json.loads(e.read() or b"{}") or {"status": "error", "error": str(e)}


FACTS = [
    ("three peers scraped", "count(chordnet_ring_info)", lambda v: v == 3),
    ("three peers ready", "sum(chordnet_ready)", lambda v: v == 3),
    ("one ring", "count(count by (ring_id) (chordnet_ring_info))", lambda v: v == 1),
    ("every predecessor known", "sum(chordnet_predecessor_known)", lambda v: v == 3),
    ("every successor list filled", "min(chordnet_successor_list_length)", lambda v: v >= 2),
    ("ring size estimate 3", "max(chordnet_ring_size_estimate)", lambda v: v == 3),
    ("lookups counted", 'sum(chordnet_lookups_total{outcome="ok"})', lambda v: v >= 1),
    ("hop histogram filled", "sum(chordnet_lookup_hops_count)", lambda v: v >= 1),
    ("stabilization running", "max(chordnet_stabilization_last_success_age_seconds)", lambda v: v < 5),
    ("RPCs counted", 'sum(chordnet_peer_rpcs_total{outcome="ok"})', lambda v: v > 0),
]


def cmd_promql(url):
    errors, empty, with_data = [], [], 0
    for where, expr in dashboard_exprs() + rule_exprs():
        q = substitute(expr)
        r = query(url, q)
        if r.get("status") != "success":
            errors.append(f"{where}: {r.get('errorType', '')} {r.get('error', r)}\n      {q}")
        elif r["data"]["result"]:
            with_data += 1
        else:
            empty.append(where)
    total = with_data + len(empty) + len(errors)
    print(f"  {total} expressions evaluated: {with_data} with data, {len(empty)} empty, {len(errors)} errors")
    for where in empty:
        why = "alert condition false on a healthy ring" if where.startswith("rule ") else \
            "no such events on a healthy ring, or a metric not exposed yet"
        print(f"    empty ({why}): {where}")
    for e in errors:
        print(f"    ERROR {e}")
    bad = bool(errors)
    for what, expr, ok in FACTS:
        r = query(url, expr)
        result = r.get("data", {}).get("result", []) if r.get("status") == "success" else []
        value = float(result[0]["value"][1]) if result else None
        good = value is not None and ok(value)
        print(f"  {'ok  ' if good else 'FAIL'} {what}: {expr} = {value}")
        bad |= not good
    # The alerting rules, loaded by the same Prometheus: evaluated without error, none active.
    with urllib.request.urlopen(f"{url}/api/v1/rules", timeout=10) as resp:
        groups = json.loads(resp.read())["data"]["groups"]
    rules = [r for g in groups for r in g["rules"]]
    for r in rules:
        healthy = r.get("health") == "ok" and r.get("state", "inactive") == "inactive"
        print(f"  {'ok  ' if healthy else 'FAIL'} alert {r['name']}: health {r.get('health')}, state {r.get('state')}"
              + (f", error {r.get('lastError')}" if r.get("lastError") else ""))
        bad |= not healthy
    if len(rules) != len(rule_exprs()):
        print(f"  FAIL Prometheus loaded {len(rules)} rules, the file has {len(rule_exprs())}")
        bad = True
    if bad:
        fail("PromQL of the dashboard or the alerts does not work against real peers")


def main(argv):
    if not argv:
        print(__doc__)
        return 2
    cmd, args = argv[0], argv[1:]
    table = {
        "render": cmd_render,
        "lint": cmd_lint,
        "reject": cmd_reject,
        "consistency": cmd_consistency,
        "tracing": cmd_tracing,
        "tracing-env": cmd_tracing_env,
        "security": cmd_security,
        "nats": cmd_nats,
        "sync": cmd_sync,
        "config-toml": cmd_config_toml,
        "metric-names": cmd_metric_names,
        "promql": cmd_promql,
    }
    if cmd == "base":
        cmd_base(check="--check" in args)
    elif cmd in table:
        table[cmd](*args)
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
