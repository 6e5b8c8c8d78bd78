#!/usr/bin/env python3
"""Where the desktop app's memory goes, beside the empty Tauri window it is measured against.

    scripts/app-memory.py [BINDIR] [--settle 25] [--sample-secs 1]

BINDIR holds gpubook-app, gpubook-agent, gpubook and empty-window (default: the release build
in $CARGO_TARGET_DIR or target/). Starts Xvfb, a D-Bus session bus and 3 agents with 4
simulated GPUs each (as the app's E2E does), the app alone (no WebDriver), then the empty
window; prints each process's PSS (anonymous / file-backed) and its largest mappings, and the
ratio with both running. The E2E's own figure (scripts/app-e2e.sh) is taken after the app was
driven through WebDriver and reads 10-15 MiB higher. Variables given as NAME=VALUE after the
options go to both windows (e.g. JSC_useJIT=0, to see what the JIT holds).
"""
import argparse, collections, os, re, signal, subprocess, sys, tempfile, time

ap = argparse.ArgumentParser()
ap.add_argument('bindir', nargs='?')
ap.add_argument('--settle', type=float, default=25)
ap.add_argument('--sample-secs', default='1')
ap.add_argument('env', nargs='*', help='NAME=VALUE for both windows')
a = ap.parse_args()
target = os.environ.get('CARGO_TARGET_DIR', os.path.join(os.path.dirname(__file__), '..', 'target'))
bindir = a.bindir or os.path.join(target, 'release')
binary = {n: os.path.join(bindir, n) for n in ('gpubook-app', 'gpubook-agent', 'gpubook')}
binary['empty-window'] = os.path.join(bindir, 'empty-window')
if not os.path.exists(binary['empty-window']):  # where cargo puts it
    binary['empty-window'] = os.path.join(bindir, 'examples', 'empty-window')
extra = dict(kv.split('=', 1) for kv in a.env)

d = tempfile.mkdtemp(prefix='gpubook-mem-')
groups = []  # process groups to end, last first


def spawn(cmd, env=None):
    log = open(os.path.join(d, os.path.basename(cmd[0]) + f'-{len(groups)}.log'), 'w')
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
    groups.append(p.pid)
    return p


def tree(pid):
    """pid and its descendants."""
    children = collections.defaultdict(list)
    for p in filter(str.isdigit, os.listdir('/proc')):
        try:
            children[int(open(f'/proc/{p}/stat').read().rsplit(')', 1)[1].split()[1])].append(int(p))
        except (OSError, IndexError, ValueError):
            pass
    out, todo = [], [pid]
    while todo:
        out.append(todo.pop())
        todo += children.get(out[-1], [])
    return out


def rollup(p):
    r = {}
    for line in open(f'/proc/{p}/smaps_rollup'):
        m = re.match(r'(\w+):\s+(\d+) kB', line)
        if m:
            r[m[1]] = int(m[2]) / 1024
    return r


def mappings(p):
    c, cur = collections.Counter(), None
    for line in open(f'/proc/{p}/smaps'):
        if re.match(r'^[0-9a-f]+-[0-9a-f]+ ', line):
            parts = line.split()
            cur = parts[5] if len(parts) > 5 else '[anon]'
        elif line.startswith('Pss:'):
            c[cur] += int(line.split()[1]) / 1024
    return c


def report(label, pid, top=0):
    total = 0
    for p in tree(pid):
        try:
            comm, r = open(f'/proc/{p}/comm').read().strip(), rollup(p)
        except OSError:
            continue
        total += r.get('Pss', 0)
        print(f'{label:6} {comm:16} PSS {r.get("Pss", 0):6.1f} MiB (anon {r.get("Pss_Anon", 0):5.1f}, file {r.get("Pss_File", 0):5.1f}), RSS {r.get("Rss", 0):6.1f}, threads {len(os.listdir(f"/proc/{p}/task"))}')
        for name, v in mappings(p).most_common(top):
            print(f'{"":26}{v:6.1f} {name}')
    print(f'{label:6} in all: PSS {total:.1f} MiB')
    return total


def end():
    for g in reversed(groups):
        try:
            os.killpg(g, signal.SIGTERM)
        except ProcessLookupError:
            pass


def interrupted(*_):
    end()
    sys.exit(1)


signal.signal(signal.SIGTERM, interrupted)
signal.signal(signal.SIGINT, interrupted)
try:
    display = f':{200 + os.getpid() % 300}'
    spawn(['Xvfb', display, '-screen', '0', '1280x1024x24', '-nolisten', 'tcp'])
    bus = subprocess.Popen(['dbus-daemon', '--session', '--nofork', '--print-address=1'], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    groups.append(bus.pid)
    bus_address = bus.stdout.readline().strip()
    open(f'{d}/policy.toml', 'w').write('admins = ["nobody-admin"]\nend_warning = "15m"\n')
    sockets = []
    for i, name in enumerate(['local', 'lab2', 'lab3']):
        sockets.append(f'{d}/{name}.sock')
        spawn([binary['gpubook-agent'], 'serve', '--state-dir', f'{d}/{name}-state', '--socket', sockets[-1], '--gpus', 'sim:4', '--name', name, '--sample-secs', a.sample_secs, '--policy', f'{d}/policy.toml'] + (['--shared'] if i == 0 else []))
    for s in sockets:
        for _ in range(200):
            if os.path.exists(s):
                break
            time.sleep(0.1)
    os.makedirs(f'{d}/config/gpubook')
    os.makedirs(f'{d}/runtime', mode=0o700)
    open(f'{d}/config/gpubook/servers.toml', 'w').write(''.join(f'[[server]]\nname = "{n}"\nspec = "unix:{s}"\n\n' for n, s in zip(['lab2', 'lab3'], sockets[1:])))
    hour = int(time.time()) // 3600 * 3600
    for k in range(6):  # a few two-hour bookings on screen
        start = time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(hour + 3600 * (2 + 3 * k)))
        subprocess.run([binary['gpubook'], '--socket', sockets[0], 'book', '--gpu', str(k % 4), '--start', start, '--for', '2h', '--title', f'run {k}'], capture_output=True)
    env = {**os.environ, 'DISPLAY': display, 'DBUS_SESSION_BUS_ADDRESS': bus_address, 'GPUBOOK_SOCKET': sockets[0], 'GPUBOOK_AGENT_BINARY': binary['gpubook-agent'], 'XDG_CONFIG_HOME': f'{d}/config', 'XDG_DATA_HOME': f'{d}/data', 'XDG_RUNTIME_DIR': f'{d}/runtime', **extra}
    app = spawn([binary['gpubook-app']], env)
    time.sleep(a.settle)
    alone = report('app', app.pid, top=8)
    empty = spawn([binary['empty-window']], env)
    time.sleep(max(8, a.settle / 2))
    print('-- both running (the libraries they share split between them):')
    e, g = report('empty', empty.pid, top=8), report('app', app.pid)
    print(f'gpubook {g:.1f} MiB / empty window {e:.1f} MiB = {g / e:.2f}x PSS (gpubook alone before: {alone:.1f} MiB)')
finally:
    end()
