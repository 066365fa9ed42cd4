#!/usr/bin/env bash
# Installs what building and testing Countersign needs on Debian 12. Idempotent: installs only
# what is missing. Runs as root, or through sudo.
set -euo pipefail

packages=(
  build-essential pkg-config ca-certificates
  openssl jq            # the vectors' openssl check
  sqlite3               # store tests alter the database file from outside
  poppler-utils         # pdftotext: the audit report tests read the PDF's text
  postgresql            # the PostgreSQL store's tests start a server from it
  procps                # end-to-end tests stop the service with kill -TERM
  git                   # the gate's tests put the git MCP server in front of a repository
  python3               # the Python MCP SDK agent, and the device sign-in's browser leg (tests/oidc)
  softhsm2 opensc       # PKCS#11: the SoftHSM2 token the key tests initialise, pkcs11-tool
  swtpm swtpm-tools tpm2-tools libtss2-dev   # TPM 2.0: the emulator and the TSS the TPM backend links
  # The desktop console (Tauri 2) and its end-to-end tests: WebKitGTK, a virtual display,
  # the WebDriver for WebKit, a D-Bus session for notifications.
  libwebkit2gtk-4.1-dev libgtk-3-dev libayatana-appindicator3-dev librsvg2-dev libssl-dev
  xvfb xauth webkit2gtk-driver dbus dbus-x11 fonts-dejavu-core
)

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null
fi

if ! command -v cargo > /dev/null; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    echo "setup: cargo is in ~/.cargo/bin; add it to PATH (source ~/.cargo/env)" >&2
  else
    echo "setup: installing the Rust toolchain with rustup"
    "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends curl > /dev/null
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal \
      --component rustfmt,clippy
  fi
  exit 1
fi
# The console's front end builds with Vite 8, which needs Node 20.19 or newer.
if ! node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=19)?0:1)' 2>/dev/null; then
  echo "setup: Node.js 20.19 or newer is needed for the console's front end (found: $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi

for component in rustfmt clippy; do
  if ! rustup component list --installed 2>/dev/null | grep -q "^$component"; then
    rustup component add "$component"
  fi
done

# The gate's tests put real MCP servers behind it and use the official Python MCP SDK as the
# agent: the npm packages locked in tests/mcp, and the SDK in a virtual environment.
root="$(cd "$(dirname "$0")/.." && pwd)"
if [ ! -x "$root/tests/mcp/node_modules/.bin/mcp-server-filesystem" ]; then
  echo "setup: installing the MCP test servers (tests/mcp)"
  (cd "$root/tests/mcp" && npm ci --no-audit --no-fund --loglevel=error)
fi
# The identity tests' OpenID Provider: oidc-provider (a certified implementation), locked in
# tests/oidc.
if [ ! -d "$root/tests/oidc/node_modules/oidc-provider" ]; then
  echo "setup: installing the test OpenID Provider (tests/oidc)"
  (cd "$root/tests/oidc" && npm ci --no-audit --no-fund --loglevel=error)
fi
venv="${COUNTERSIGN_VENV:-/root/.cache/countersign-venv}"
if ! "$venv/bin/python" -c "import mcp, mcp_server_git, scim2_client, standardwebhooks" 2> /dev/null; then
  echo "setup: installing the Python MCP SDK, the git MCP server, the SCIM client and the Standard Webhooks library into $venv"
  if [ ! -x "$venv/bin/pip" ]; then
    if ! python3 -m venv --help > /dev/null 2>&1 || ! python3 -c "import ensurepip" 2> /dev/null; then
      "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends python3-venv > /dev/null
    fi
    python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install -q -r "$root/tests/mcp/requirements.txt"
  "$venv/bin/pip" install -q -r "$root/tests/scim/requirements.txt"
  "$venv/bin/pip" install -q -r "$root/tests/channels/requirements.txt"
fi

# The console's end-to-end tests drive the app through tauri-driver (WebDriver for Tauri).
if ! command -v tauri-driver > /dev/null; then
  echo "setup: installing tauri-driver"
  cargo install tauri-driver --locked --version 2.1.0 --quiet
fi
