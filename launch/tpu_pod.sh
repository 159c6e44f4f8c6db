#!/usr/bin/env bash
# Run genret_jax.main on every worker of a Cloud TPU VM slice (create it or reuse it), with a
# shared GCS workdir, and start again after a preemption (the job resumes from its latest
# checkpoint in the workdir).
#
#   launch/tpu_pod.sh --name genret-v4 --zone us-central2-b --accelerator v4-32 \
#       --workdir gs://BUCKET/run1 [--project P] [--spot] [--retries 5] [--dry-run] \
#       -- --config=configs/joint.py --config.scale=paper
#
# Needs gcloud, authenticated. The code is copied from this checkout to every worker and
# installed there with `pip install -e .` plus jax[tpu].
set -euo pipefail

name="" zone="" accelerator="v4-8" version="tpu-ubuntu2204-base" project="" workdir=""
spot=0 retries=3 dry_run=0

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --name) name="$2"; shift 2 ;;
    --zone) zone="$2"; shift 2 ;;
    --accelerator) accelerator="$2"; shift 2 ;;
    --version) version="$2"; shift 2 ;;
    --project) project="$2"; shift 2 ;;
    --workdir) workdir="$2"; shift 2 ;;
    --spot) spot=1; shift ;;
    --retries) retries="$2"; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    *) echo "error: unknown option $1 (main's own flags go after --)" >&2; exit 2 ;;
  esac
done
for required in name zone workdir; do
  if [[ -z "${!required}" ]]; then echo "error: --${required} is required" >&2; exit 2; fi
done
if [[ "$workdir" != gs://* ]]; then
  echo "error: --workdir must be a gs:// path every worker can reach (got ${workdir})" >&2
  exit 2
fi

gcloud_tpu=(gcloud compute tpus tpu-vm)
common=(--zone="$zone")
if [[ -n "$project" ]]; then common+=(--project="$project"); fi
main_args="$*"

run() {
  if [[ "$dry_run" == 1 ]]; then echo "$*"; else "$@"; fi
}

tpu_state() {
  if [[ "$dry_run" == 1 ]]; then echo "MISSING"; return; fi
  "${gcloud_tpu[@]}" describe "$name" "${common[@]}" --format='value(state)' 2>/dev/null || echo "MISSING"
}

ensure_tpu() {
  local state
  state=$(tpu_state)
  if [[ "$state" == "PREEMPTED" || "$state" == "TERMINATED" ]]; then
    run "${gcloud_tpu[@]}" delete "$name" "${common[@]}" --quiet
    state="MISSING"
  fi
  if [[ "$state" == "MISSING" ]]; then
    local create=("${gcloud_tpu[@]}" create "$name" "${common[@]}"
                  --accelerator-type="$accelerator" --version="$version")
    if [[ "$spot" == 1 ]]; then create+=(--spot); fi
    run "${create[@]}"
    install_code
  fi
}

install_code() {
  local tarball=/tmp/genret_jax_src.tar.gz
  run tar --exclude=.git --exclude=.venv -czf "$tarball" .
  run "${gcloud_tpu[@]}" scp "$tarball" "${name}:~/" "${common[@]}" --worker=all
  run "${gcloud_tpu[@]}" ssh "$name" "${common[@]}" --worker=all --command="mkdir -p genret_jax && tar -xzf genret_jax_src.tar.gz -C genret_jax && cd genret_jax && pip install -q -e . 'jax[tpu]'"
}

start_job() {
  run "${gcloud_tpu[@]}" ssh "$name" "${common[@]}" --worker=all \
    --command="cd genret_jax && python3 -m genret_jax.main --distributed=auto --workdir=${workdir} ${main_args}"
}

attempt=0
while true; do
  ensure_tpu
  if start_job; then exit 0; fi
  attempt=$((attempt + 1))
  if [[ "$attempt" -gt "$retries" ]]; then
    echo "error: job failed ${attempt} times; giving up" >&2
    exit 1
  fi
  echo "job failed (attempt ${attempt}/${retries}); checking for preemption and resuming" >&2
done
