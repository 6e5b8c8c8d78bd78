#!/usr/bin/env bash
# Builds the desktop app: the UI (ui/ → ui/dist) and then the Tauri binary gpubook-app, with
# the agent and CLI beside it (the app starts gpubook-agent for "This computer").
#   scripts/app-build.sh            debug build
#   scripts/app-build.sh --release  release build
# Without ui/package.json (or without npm) a placeholder ui/dist lets the Rust side compile.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=debug
args=()
if [[ "${1:-}" == "--release" ]]; then
  profile=release
  args=(--release)
fi
if [[ -f ui/package.json ]] && command -v npm >/dev/null; then
  (cd ui && { [[ -d node_modules ]] && [[ node_modules -nt package-lock.json ]] || npm ci --no-audit --no-fund; } && npm run build)
else
  echo "app-build: no ui/package.json or npm; writing a placeholder ui/dist" >&2
  mkdir -p ui/dist
  [[ -f ui/dist/index.html ]] || cat > ui/dist/index.html <<'HTML'
<!doctype html><html><head><meta charset="utf-8"><title>gpubook</title></head>
<body><p>The gpubook UI was not built (scripts/app-build.sh needs npm and ui/package.json).</p></body></html>
HTML
fi
# Separate invocations: built together, cargo would unify features across the three and
# rebuild Tauri's dependency tree a second time.
cargo build "${args[@]}" -p gpubook-app
cargo build "${args[@]}" -p gpubook-agent -p gpubook-cli
dir="${CARGO_TARGET_DIR:-target}/$profile"
echo "app-build: $dir/gpubook-app (agent: $dir/gpubook-agent, CLI: $dir/gpubook)"
