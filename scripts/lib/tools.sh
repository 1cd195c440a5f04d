# Sourced by scripts/test, scripts/dev and .ci/run: the pinned tools, installed from
# PyPI when missing or at another version.
#
# Pinned because they change under us: cfn-lint 1.58 passed broken SAM templates
# that 1.51 rejects (deploy/tests/template.rs proves the pinned one still does).

CFN_LINT_VERSION=1.51.0
CARGO_LAMBDA_VERSION=1.9.2

# pip_tool COMMAND PACKAGE VERSION: COMMAND answers with VERSION afterwards.
pip_tool() {
  local cmd=$1 package=$2 version=$3
  if command -v "$cmd" >/dev/null 2>&1 && "$cmd" --version 2>/dev/null | grep -qF " $version"; then
    return 0
  fi
  echo "Installing $package==$version (pip)…" >&2
  python3 -m pip install --quiet --disable-pip-version-check "$package==$version" >&2
  command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
  "$cmd" --version >/dev/null
}

ensure_cfn_lint() { pip_tool cfn-lint cfn-lint "$CFN_LINT_VERSION"; }

# cargo-lambda's pip package ships the binary (and zig); cargo finds it on PATH.
ensure_cargo_lambda() { pip_tool cargo-lambda cargo-lambda "$CARGO_LAMBDA_VERSION"; }
