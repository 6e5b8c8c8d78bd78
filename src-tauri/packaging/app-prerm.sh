#!/bin/sh
# Before the gpubook app package is removed: stop the personal agents it started for "This
# computer". They run the package's own agent build (/usr/lib/gpubook/agents/ARCH/) in each
# person's session and would otherwise outlive the package. SIGTERM: each stops as on logout,
# leaving the person's bookings and state in ~/.local/state/gpubook. Not on upgrade: the new
# app starts its agent again. deb: prerm remove; rpm: %preun with 0 packages left.
case "$1" in
  remove | 0) ;;
  *) exit 0 ;;
esac
for link in /proc/[0-9]*/exe; do
  target=$(readlink "$link" 2>/dev/null) || continue
  case "$target" in
    /usr/lib/gpubook/agents/*/gpubook-agent*)
      pid=${link#/proc/}
      kill -TERM "${pid%/exe}" 2>/dev/null || true
      ;;
  esac
done
exit 0
