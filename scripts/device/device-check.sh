#!/usr/bin/env bash
# One short check of gpubook-agent on a real GPU: NVML inventory and readings through the
# agent and the CLI, and a CUDA process of another user seen with its user.
set -u
B="$(cd "$(dirname "$0")" && pwd)"
export GPUBOOK_SOCKET=/tmp/gb/agent.sock TZ=UTC
mkdir -p /tmp/gb
nvidia-smi --query-gpu=index,name,uuid,memory.total --format=csv,noheader
/usr/bin/time -v "$B/gpubook-agent" serve --state-dir /tmp/gb/state --socket /tmp/gb/agent.sock --gpus nvml --name gpu-box --shared --sample-secs 1 2>/tmp/gb/agent.err &
for i in $(seq 100); do "$B/gpubook" whoami >/dev/null 2>&1 && break; sleep 0.1; done
echo "== whoami"; "$B/gpubook" whoami
echo "== gpus (idle)"; sleep 1.2; "$B/gpubook" gpus
id gbuser >/dev/null 2>&1 || useradd -m gbuser
cat > /tmp/gb/load.py <<'PY'
import torch, time
x = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
t = time.time()
while time.time() - t < 12:
    y = x @ x
torch.cuda.synchronize()
PY
chmod 644 /tmp/gb/load.py
PY=$(command -v python3)
setpriv --reuid=gbuser --regid=gbuser --init-groups "$PY" /tmp/gb/load.py & LP=$!
sleep 7
echo "== gpus (gbuser's process running, pid $LP)"; "$B/gpubook" gpus
echo "== book GPU 0 by UUID via index, and ls"
"$B/gpubook" book --gpu 0 --start +1h --for 2h --title "h200 check"; "$B/gpubook" ls
echo "== readings pushed (3 s)"; timeout 3 "$B/gpubook" watch --readings | head -5
echo "== agent RSS"; for p in $(pgrep -f 'gpubook-agent serve'); do grep -E 'VmRSS|VmHWM' /proc/$p/status; done
wait $LP
pkill -TERM -f 'gpubook-agent serve'; sleep 1
echo "== agent stderr"; tail -30 /tmp/gb/agent.err
