#!/usr/bin/env bash
# Compatibility check: run a subset of the tests on other jax versions than the lock's.
#
#   bash tests/compat/run_compat.sh JAX_VERSION [more versions...]
#   e.g. bash tests/compat/run_compat.sh 0.7.1 0.10.2
#
# For each version: a fresh venv under ${TMPDIR:-/tmp}, that jax (jaxlib comes with it) with
# the flax / optax / orbax-checkpoint of the table below, nasi-jax itself (--no-deps, editable)
# and neural-tangents 0.6.5 (--no-deps, as the README says); then the compat test subset.
# Prints one summary line per version and exits non-zero if any version failed.
# CI does not run this script (CI installs requirements.lock's exact versions).
#
# Environment: PYTHON (interpreter for the venvs, default python3), NASI_DATA_DIR (the shared
# data root; without it the real-data tests skip), KEEP_VENVS=1 (keep the venvs).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PYTHON=${PYTHON:-python3}
BASE=${TMPDIR:-/tmp}

# jax -> "flax optax orbax-checkpoint". Where each pairing comes from: the Requires-Dist of
# the wheels on PyPI (read 2026-05 with `pip download --no-deps X==V` + the METADATA file):
#   flax 0.10.5-0.10.6: jax>=0.5.1   flax 0.10.7-0.11.2: jax>=0.6.0   flax 0.12.0: jax>=0.7.1
#   flax 0.12.1-0.12.6: jax>=0.8.1   flax 0.12.7-0.12.8: jax>=0.10.0
#   optax 0.2.6-0.2.8: jax>=0.5.3    orbax-checkpoint 0.11.30-0.12.8: jax>=0.6.0 (0.11.20: jax>=0.5.0)
# Each row takes the newest flax that admits that jax (what pip picks for it), except that
# flax 0.12.3-0.12.4 cap numpy<2.4 / pin optax==0.2.6, so the 0.8.1+ rows take flax 0.12.6;
# optax / orbax-checkpoint: the lock's (0.2.8 / 0.12.8) where their jax floor allows.
# The 0.10 row is requirements.lock's pairing.
pairing() {
  case "$1" in
    0.10.*)             echo "flax==0.12.8 optax==0.2.8 orbax-checkpoint==0.12.8" ;;
    0.8.[1-9]*|0.9.*)   echo "flax==0.12.6 optax==0.2.8 orbax-checkpoint==0.12.8" ;;
    0.7.[1-9]*|0.8.0)   echo "flax==0.12.0 optax==0.2.8 orbax-checkpoint==0.12.8" ;;
    0.6.*|0.7.0)        echo "flax==0.11.2 optax==0.2.8 orbax-checkpoint==0.12.8" ;;
    0.5.3)              echo "flax==0.10.6 optax==0.2.8 orbax-checkpoint==0.11.20" ;;
    *) return 1 ;;
  esac
}

# The compat subset (about 2 min per version on 2 CPU cores): importing the package and the
# CLI, the supernet and the NB201 space, the custom conv, the neural-tangents compat layer,
# small searches (library and `nasi search`), and `nasi train` with a checkpoint + resume.
TESTS=(
  tests/test_nt_compat.py
  tests/test_conv.py
  tests/test_nb201.py
  tests/test_search.py::test_one_compilation_for_eight_seeds
  tests/test_search.py::test_one_compilation_for_one_seed_and_same_seed_same_result
  tests/test_search.py::test_adaptive_nu_is_running_mean
  tests/test_search.py::test_eq18_matches_reference
  tests/test_search.py::test_fixed_nu_and_soft_samples
  tests/test_search.py::test_scan_loop_equals_host_loop
  tests/test_search.py::test_non_finite_scores_raise
  tests/test_search.py::test_hard_sample_is_one_hot_with_soft_gradient
  tests/test_cli.py::test_help_runs
  tests/test_cli.py::test_tiny_search_writes_result
  tests/test_cli.py::test_info
  tests/test_train.py::test_nb201_recipe_trains
  tests/test_train.py::test_cli_train_end_to_end
)

if [ $# -eq 0 ]; then
  sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi

summary=()
status=0
for v in "$@"; do
  start=$SECONDS
  if ! pins=$(pairing "$v"); then
    summary+=("jax $v: FAIL (no flax/optax/orbax pairing for this version in the table)")
    status=1
    continue
  fi
  venv=$(mktemp -d "$BASE/nasi-compat-jax$v-XXXXXX")
  echo "=== jax $v ($pins) in $venv"
  log="$venv/pytest.log"
  ok=1
  "$PYTHON" -m venv "$venv" || ok=0
  if [ $ok = 1 ]; then
    # shellcheck disable=SC2086
    "$venv/bin/pip" install -q --disable-pip-version-check "jax==$v" $pins numpy pillow filelock pytest || ok=0
  fi
  if [ $ok = 1 ]; then
    "$venv/bin/pip" install -q --disable-pip-version-check --no-deps -e "$ROOT" neural-tangents==0.6.5 frozendict || ok=0
  fi
  if [ $ok = 1 ]; then
    "$venv/bin/pip" list --disable-pip-version-check 2>/dev/null | grep -iE 'jax|flax|optax|orbax|numpy'
    "$venv/bin/nasi" --help > /dev/null || { echo "nasi --help failed"; ok=0; }
    (cd "$ROOT" && "$venv/bin/python" -m pytest -q -p no:cacheprovider -p no:xdist -o addopts= "${TESTS[@]}") 2>&1 | tee "$log"
    [ "${PIPESTATUS[0]}" = 0 ] || ok=0
  fi
  line=$(grep -E '^[=]* ?[0-9]+ (passed|failed|error)' "$log" 2>/dev/null | tail -1 | sed 's/=//g; s/ in [0-9.]*s.*//; s/^ *//')
  passed=$(grep -oE '[0-9]+ passed' <<< "$line" | awk '{s += $1} END {print s + 0}')
  failed=$(grep -oE '[0-9]+ (failed|errors?)' <<< "$line" | awk '{s += $1} END {print s + 0}')
  t=$((SECONDS - start))
  if [ $ok = 1 ]; then res=PASS; else res=FAIL; status=1; fi
  summary+=("jax $v: $res (${passed:-0} passed, $failed failed, ${t} s)")
  [ "${KEEP_VENVS:-0}" = 1 ] || rm -rf "$venv"
done

echo
printf '%s\n' "${summary[@]}"
exit $status
