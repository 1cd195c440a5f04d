# Sourced by scripts/test, scripts/dev and .ci/run: the pinned tools, installed from
# PyPI when missing or at another version.
#
# Pinned because they change under us: cfn-lint 1.58 passed broken SAM templates
# that 1.51 rejects (deploy/tests/template.rs proves the pinned one still does).

CFN_LINT_VERSION=1.51.0
CARGO_LAMBDA_VERSION=1.9.2
# scripts/fuzz-api: the API fuzzer and the OpenAPI validator it runs first.
SCHEMATHESIS_VERSION=4.32.5
OPENAPI_SPEC_VALIDATOR_VERSION=0.9.0

# pip_tool PACKAGE VERSION VERSION-COMMAND…: installs PACKAGE==VERSION unless the
# command already prints that version; fails if it does not afterwards.
pip_tool() {
  local package=$1 version=$2
  shift 2
  if "$@" 2>/dev/null | grep -qF " $version"; then
    return 0
  fi
  echo "Installing $package==$version (pip)…" >&2
  python3 -m pip install --quiet --disable-pip-version-check "$package==$version" >&2
  if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
  "$@" | grep -qF " $version" || { echo "$package $version is not on PATH after installing it" >&2; exit 1; }
}

ensure_cfn_lint() { pip_tool cfn-lint "$CFN_LINT_VERSION" cfn-lint --version; }

# cargo-lambda's pip package ships the binary (and zig); cargo finds it on PATH.
ensure_cargo_lambda() { pip_tool cargo-lambda "$CARGO_LAMBDA_VERSION" cargo lambda --version; }

# Schemathesis in a virtualenv of its own (target/tools/), so its many dependencies
# never meet cfn-lint's in the system Python; SCHEMATHESIS_BIN names its bin/.
ensure_schemathesis() {
  local venv=target/tools/schemathesis-$SCHEMATHESIS_VERSION
  SCHEMATHESIS_BIN=$PWD/$venv/bin
  # Captured first: `grep -q` stopping early would fail the writer under pipefail.
  local have
  have=$("$SCHEMATHESIS_BIN/pip" freeze 2>/dev/null || true)
  if grep -qx "schemathesis==$SCHEMATHESIS_VERSION" <<<"$have" \
    && grep -qx "openapi-spec-validator==$OPENAPI_SPEC_VALIDATOR_VERSION" <<<"$have"; then
    return 0
  fi
  echo "Installing schemathesis==$SCHEMATHESIS_VERSION into $venv (pip)…" >&2
  python3 -m venv "$venv"
  "$SCHEMATHESIS_BIN/pip" install --quiet --disable-pip-version-check \
    "schemathesis==$SCHEMATHESIS_VERSION" "openapi-spec-validator==$OPENAPI_SPEC_VALIDATOR_VERSION" >&2
  "$SCHEMATHESIS_BIN/schemathesis" --version | grep -qF " $SCHEMATHESIS_VERSION" \
    || { echo "schemathesis $SCHEMATHESIS_VERSION did not install" >&2; exit 1; }
}
