#!/usr/bin/env bash
# The real-GPU check of issue 10, for a host with NVIDIA GPUs: `goq work --gpus auto` must find
# them through nvidia-smi, a `goq sub --gpus 1` job must see exactly one device, a job that asks
# for no GPU must see none, and a job asking for more GPUs than the host has must wait saying
# why. Prints what it saw; run from the repository root:  bash bench/gpu_check.sh
# (PYTHON picks the interpreter that has goq's dependencies; torch is used if it is there.)
set -u
PY=${PYTHON:-python3}
case $PY in /*) ;; */*) PY="$PWD/$PY" ;; esac  # the script changes directory
export GOQ_HOME=$(mktemp -d) GOQ_JSERV_IP=127.0.0.1 GOQ_JSERV_PORT=${PORT:-17761}
export GOQ_HEARTBEAT_SEC=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
goq() { "$PY" -m goq_cli "$@"; }
echo "== nvidia-smi -L"; nvidia-smi -L
goq init > /dev/null
goq serve > "$GOQ_HOME/serve.log" 2>&1 & server=$!
for _ in $(seq 50); do goq stat 0 > /dev/null 2>&1 && break; sleep 0.2; done
goq work --gpus auto --cpus 4 --name gpu-host > "$GOQ_HOME/work.log" 2>&1 & worker=$!
for _ in $(seq 50); do goq workers --json 2>/dev/null | grep -q gpu-host && break; sleep 0.2; done
echo "== goq workers"; goq workers
cd "$GOQ_HOME"
probe='echo "CUDA_VISIBLE_DEVICES=[$CUDA_VISIBLE_DEVICES] GOQ_GPUS=[$GOQ_GPUS] GOQ_CPUS=$GOQ_CPUS"
nvidia-smi -L 2>&1 | sed "s/^/  nvidia-smi: /"
'"$PY"' -c "import torch; print(\"  torch.cuda.device_count() =\", torch.cuda.device_count())" 2>&1 | tail -1'
one=$(goq sub --gpus 1 --shell "$probe" | awk '{print $3}')
none=$(goq sub --shell "$probe" | awk '{print $3}')
ngpus=$(nvidia-smi -L | grep -c '^GPU')
big=$(goq sub --gpus $((ngpus + 1)) true | awk '{print $3}')
goq wait "$one" > /dev/null; goq wait "$none" > /dev/null
echo "== job $one (--gpus 1)"; cat "o/out.$(printf %05d "$one")"
echo "== job $none (no GPU asked)"; cat "o/out.$(printf %05d "$none")"
echo "== goq stat (job $big asks for $((ngpus + 1)) GPUs)"; goq stat
goq kill "$big" > /dev/null
goq shutdown > /dev/null; kill "$worker"; wait "$server" "$worker" 2> /dev/null
echo "== worker log"; cat "$GOQ_HOME/work.log"
