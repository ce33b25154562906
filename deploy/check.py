"""Offline checks of deploy/ that need more than the tools themselves (deploy/check.sh).

  check.py k8s FILE...   every resource of the rendered manifests against Kubernetes'
                         schemas (kubernetes-validate, strict); a ServiceMonitor (a CRD,
                         which those schemas do not have) against the Service it selects
  check.py compose       compose.yaml's references: files, services, volumes, the
                         metrics token Prometheus presents against the hash isobar holds
  check.py grafana       the dashboard: every query parses as PromQL, panels do not overlap
  check.py names         the metric names the dashboard's and the rules' PromQL select,
                         one per line (the test that scrapes a live isobar reads these)
"""

import hashlib
import json
import re
import sys
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parent

# Grafana's variables, replaced by values PromQL accepts before parsing.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h", "$instance": ".*"}


def fail(message):
    print(f"deploy check: {message}", file=sys.stderr)
    sys.exit(1)


def check_k8s(files):
    import kubernetes_validate.utils as kv

    resources = []
    for name in files:
        for resource in kv.resources_from_file(name):
            resources.append((name, resource))
    if not resources:
        fail("no resources rendered")
    services = {r["metadata"]["name"]: r for _, r in resources if r["kind"] == "Service"}
    for name, resource in resources:
        what = f"{name}: {resource['kind']}/{resource['metadata']['name']}"
        if resource["kind"] == "ServiceMonitor":
            check_service_monitor(what, resource, services)
            continue
        try:
            version = kv.validate(resource, kv.latest_version(), strict=True)
        except kv.ValidationError as e:
            fail(f"{what} against Kubernetes {e.version}: {'.'.join(map(str, e.path))}: {e.message}")
        except kv.SchemaNotFoundError as e:
            fail(f"{what}: {e.message}")
        print(f"ok {what} (Kubernetes {version}, strict)")


def check_service_monitor(what, monitor, services):
    if monitor["apiVersion"] != "monitoring.coreos.com/v1":
        fail(f"{what}: apiVersion {monitor['apiVersion']}")
    spec = monitor["spec"]
    wanted = spec["selector"]["matchLabels"]
    selected = [s for s in services.values() if wanted.items() <= s["metadata"].get("labels", {}).items()]
    if len(selected) != 1:
        fail(f"{what}: its selector {wanted} matches {len(selected)} Services, not one")
    ports = {p.get("name") for p in selected[0]["spec"]["ports"]}
    for endpoint in spec["endpoints"]:
        unknown = set(endpoint) - {"port", "path", "interval", "scrapeTimeout", "authorization"}
        if unknown:
            fail(f"{what}: unexpected endpoint fields {sorted(unknown)}")
        if endpoint["port"] not in ports:
            fail(f"{what}: port {endpoint['port']!r} is not a port name of Service {selected[0]['metadata']['name']}")
        if endpoint.get("path") != "/metrics":
            fail(f"{what}: path {endpoint.get('path')!r}")
        credentials = endpoint.get("authorization", {}).get("credentials", {})
        if not (credentials.get("name") and credentials.get("key")):
            fail(f"{what}: /metrics needs an admin key from outside loopback: authorization.credentials")
    print(f"ok {what} (selects Service {selected[0]['metadata']['name']}, port {spec['endpoints'][0]['port']})")


def check_compose():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    volumes = set(compose.get("volumes", {}))
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            if dependency not in services:
                fail(f"compose: {name} depends on unknown service {dependency}")
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith("."):
                if not (DEPLOY / source).exists():
                    fail(f"compose: {name} mounts {source}, which does not exist")
            elif source not in volumes:
                fail(f"compose: {name} mounts undeclared volume {source}")
        build = service.get("build")
        if build and not (DEPLOY / build["context"] / build["dockerfile"]).is_file():
            fail(f"compose: {name} builds from a missing {build['dockerfile']}")
    instances = [n for n, s in services.items() if "ISOBAR__REDIS__URL" in s.get("environment", {})]
    if len(instances) < 2:
        fail(f"compose: {len(instances)} isobar instances, want two")
    upstreams = re.findall(r"server (\S+):8080", (DEPLOY / "compose/nginx.conf").read_text())
    if sorted(upstreams) != sorted(instances):
        fail(f"compose: nginx balances {upstreams}, the instances are {instances}")
    prometheus = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
    job = prometheus["scrape_configs"][0]
    targets = [t.split(":")[0] for t in job["static_configs"][0]["targets"]]
    if sorted(targets) != sorted(instances):
        fail(f"compose: Prometheus scrapes {targets}, the instances are {instances}")
    token = job["authorization"]["credentials"]
    digest = hashlib.sha256(token.encode()).hexdigest()
    for name in instances:
        if f'sha256="{digest}"' not in services[name]["environment"]["ISOBAR__AUTH__KEYS"]:
            fail(f"compose: {name} does not hold the key Prometheus presents (sha256 {digest})")
    topics = re.findall(r"(isobar\.[a-z.]+):(\d+)", services["kafka-topics"]["command"][0])
    if [t for t, _ in topics] != ["isobar.readings", "isobar.readings.dlq", "isobar.updates"]:
        fail(f"compose: topics {topics}")
    print(f"ok compose: {len(services)} services, {len(instances)} isobar instances behind nginx, "
          f"topics {', '.join(f'{t} ({p})' for t, p in topics)}")


def grafana_queries():
    dashboard = json.loads((DEPLOY / "grafana/isobar.json").read_text())
    queries = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            queries.append((panel["title"], target["expr"]))
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            inner = re.fullmatch(r"label_values\((.+), *\w+\)", query["query"])
            if not inner:
                fail(f"grafana: variable {variable['name']}: {query['query']}")
            queries.append((f"variable {variable['name']}", inner.group(1)))
    return dashboard, queries


def substitute(expr):
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    if "$" in expr.replace("$labels", ""):
        fail(f"grafana: a variable check.py does not know in {expr}")
    return expr


def check_grafana():
    import promql_parser

    dashboard, queries = grafana_queries()
    for title, expr in queries:
        try:
            promql_parser.parse(substitute(expr))
        except Exception as e:  # the parser's error names the position
            fail(f"grafana: {title}: {expr}: {e}")
    ids = [p["id"] for p in dashboard["panels"]]
    if len(ids) != len(set(ids)):
        fail("grafana: panel ids repeat")
    cells = {}
    for panel in dashboard["panels"]:
        g = panel["gridPos"]
        if g["x"] + g["w"] > 24:
            fail(f"grafana: {panel['title']} is wider than the grid")
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                if (x, y) in cells:
                    fail(f"grafana: {panel['title']} overlaps {cells[(x, y)]}")
                cells[(x, y)] = panel["title"]
    print(f"ok grafana: {len(queries)} queries parse, {len(ids)} panels on the grid")


def selectors(node, out):
    """The metric names of every vector and matrix selector under `node`."""
    import promql_parser

    if isinstance(node, promql_parser.VectorSelector):
        out.add(node.name)
        return
    if isinstance(node, promql_parser.MatrixSelector):
        out.add(node.vector_selector.name)
        return
    for field in ("expr", "lhs", "rhs", "param"):
        child = getattr(node, field, None)
        if child is not None and not isinstance(child, (str, int, float)):
            selectors(child, out)
    for arg in getattr(node, "args", None) or []:
        selectors(arg, out)


def names():
    import promql_parser

    exprs = [e for _, e in grafana_queries()[1]]
    rules = yaml.safe_load((DEPLOY / "prometheus/rules.yml").read_text())
    exprs += [r["expr"] for g in rules["groups"] for r in g["rules"]]
    found = set()
    for expr in exprs:
        selectors(promql_parser.parse(substitute(expr)), found)
    for name in sorted(found):
        print(name)


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "k8s":
        check_k8s(sys.argv[2:])
    elif command == "compose":
        check_compose()
    elif command == "grafana":
        check_grafana()
    elif command == "names":
        names()
    else:
        fail(__doc__)
