# shellcheck shell=bash
# The web portal's front end (portal/): its npm packages, exactly as package-lock.json pins
# them, and its build into portal/dist/, which the ssp binary embeds (crates/ssp-server/build.rs).
# Sourced after lib/host.sh (ssp_log, ssp_die, ssp_install_packages); idempotent.

SSP_NODE_MIN=18

# Builds portal/dist/ with Debian's Node.js (18 is enough) and npm: `npm ci` when the
# installed packages are missing or older than the lock file, then `npm run build` (tsc's
# type check, then esbuild). A build that changes nothing leaves dist/ untouched.
ssp_build_portal() {
  local portal major
  portal=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../portal" && pwd) || ssp_die "the portal/ folder is missing"
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    ssp_install_packages nodejs npm
  fi
  major=$(node -p 'process.versions.node.split(".")[0]') || ssp_die "node does not run: reinstall Debian's nodejs package"
  if [ "$major" -lt "$SSP_NODE_MIN" ]; then
    ssp_die "Node.js $(node --version) is too old to build the portal: it needs $SSP_NODE_MIN or newer (Debian 12's nodejs package is 18); install that one, or put a newer node first in PATH"
  fi
  if [ ! -d "$portal/node_modules" ] || [ "$portal/package-lock.json" -nt "$portal/node_modules/.package-lock.json" ]; then
    ssp_log "installing the portal's npm packages (as portal/package-lock.json pins them)"
    (cd "$portal" && npm ci --no-audit --no-fund) || ssp_die "npm ci failed in $portal"
  fi
  ssp_log "building the portal"
  (cd "$portal" && npm run --silent build) || ssp_die "the portal's build failed (see above)"
}

# The browser tests' npm packages (tests/browser/: playwright-core and axe-core, as its
# package-lock.json pins them; playwright-core downloads no browser: the tests drive
# Debian's chromium).
ssp_prepare_browser_tests() {
  local folder
  folder=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../tests/browser" && pwd) || ssp_die "tests/browser/ is missing"
  if [ ! -d "$folder/node_modules" ] || [ "$folder/package-lock.json" -nt "$folder/node_modules/.package-lock.json" ]; then
    ssp_log "installing the browser tests' npm packages (as tests/browser/package-lock.json pins them)"
    (cd "$folder" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund) || ssp_die "npm ci failed in $folder"
  fi
}
