#!/usr/bin/env bash
# Jobs on a real GPU: a booked slot starts a PyTorch job as its owner with exactly the booked
# GPU visible; readings show its process; the slot's end stops it; usage is recorded; a root
# process on the booked GPU is reported as an intruder.
set -u
B="$(cd "$(dirname "$0")" && pwd)"
export TZ=UTC GPUBOOK_SOCKET=/tmp/gj/agent.sock
rm -rf /tmp/gj; mkdir -p /tmp/gj; chmod 755 /tmp/gj
printf 'granularity = "1s"\n' > /tmp/gj/policy.toml
"$B/gpubook-agent" serve --state-dir /tmp/gj/state --gpus nvml --name gpu-box --shared --policy /tmp/gj/policy.toml 2>/tmp/gj/agent.err &
for i in $(seq 100); do "$B/gpubook" whoami >/dev/null 2>&1 && break; sleep 0.1; done
id gbuser >/dev/null 2>&1 || useradd -m -s /bin/bash gbuser
PY=$(command -v python3)
U=gbuser
setpriv --reuid=gbuser --regid=gbuser --init-groups "$PY" -c 'import torch' 2>/dev/null || { echo "torch not usable by gbuser; job runs as root"; U=root; }
as_u() { if [ "$U" = root ]; then "$@"; else setpriv --reuid=$U --regid=$U --init-groups "$@"; fi; }
cat > /tmp/gj/job.py <<'PY'
import os, time, signal, sys, torch
print("CUDA_VISIBLE_DEVICES", os.environ.get("CUDA_VISIBLE_DEVICES"), "order", os.environ.get("CUDA_DEVICE_ORDER"), flush=True)
print("uid", os.getuid(), "torch sees", torch.cuda.device_count(), "GPU(s):", [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())], flush=True)
def term(*_):
    print("got SIGTERM at the slot's end, exiting", flush=True); sys.exit(0)
signal.signal(signal.SIGTERM, term)
x = torch.randn(16384, 16384, device="cuda", dtype=torch.bfloat16)
hold = torch.empty(20 * 1024**3, dtype=torch.uint8, device="cuda")
t = time.time()
while time.time() - t < 120:
    y = x @ x
    torch.cuda.synchronize()
print("ran out the clock (not expected)", flush=True)
PY
chmod 644 /tmp/gj/job.py
UUID=$("$B/gpubook" --json gpus | grep -m1 '"uuid"' | sed 's/.*"\(GPU-[^"]*\)".*/\1/')
echo "== GPU 0 is $UUID; booking it as $U for 35 s starting in 3 s, with a PyTorch job"
as_u "$B/gpubook" book --gpu 0 --start +3s --for 35s --title "h200 job check" -- "$PY" /tmp/gj/job.py
sleep 14
echo "== readings while the job runs"; "$B/gpubook" gpus
echo "== a root process on the booked GPU (an intruder) for 6 s"
"$PY" -c "import torch,time; z=torch.empty(2*1024**3,dtype=torch.uint8,device='cuda'); time.sleep(6)" &
sleep 8
"$B/gpubook" wait 1; echo "wait exit status: $?"
sleep 3
echo "== job log"; as_u "$B/gpubook" logs 1
echo "== events"; timeout 5 "$B/gpubook" watch --after 0
echo "== usage"; "$B/gpubook" usage
echo "== job processes left on the GPU"; nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader
pkill -TERM -f 'gpubook-agent serve'; sleep 1; echo "== agent stderr"; tail -20 /tmp/gj/agent.err
