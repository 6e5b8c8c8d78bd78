# Sends WM_DELETE_WINDOW to every top-level X window titled sys.argv[1], as a window
# manager's close button does (Xvfb has no window manager). Uses libX11 through ctypes.
import ctypes, ctypes.util, re, subprocess, sys

title = sys.argv[1]
tree = subprocess.run(["xwininfo", "-root", "-tree"], capture_output=True, text=True).stdout
ids = [int(m.group(1), 16) for m in re.finditer(r'^\s*(0x[0-9a-f]+) "' + re.escape(title) + '"', tree, re.M)]
x = ctypes.CDLL(ctypes.util.find_library("X11"))
x.XOpenDisplay.restype = ctypes.c_void_p
x.XOpenDisplay.argtypes = [ctypes.c_char_p]
x.XInternAtom.restype = ctypes.c_ulong
x.XInternAtom.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
x.XSendEvent.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
x.XFlush.argtypes = [ctypes.c_void_p]


class ClientMessage(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("serial", ctypes.c_ulong), ("send_event", ctypes.c_int),
                ("display", ctypes.c_void_p), ("window", ctypes.c_ulong), ("message_type", ctypes.c_ulong),
                ("format", ctypes.c_int), ("l", ctypes.c_long * 5)]


class XEvent(ctypes.Union):
    _fields_ = [("xclient", ClientMessage), ("pad", ctypes.c_long * 24)]


dpy = x.XOpenDisplay(None)
protocols = x.XInternAtom(dpy, b"WM_PROTOCOLS", 0)
delete = x.XInternAtom(dpy, b"WM_DELETE_WINDOW", 0)
for w in ids:
    ev = XEvent()
    ev.xclient.type = 33  # ClientMessage
    ev.xclient.window = w
    ev.xclient.message_type = protocols
    ev.xclient.format = 32
    ev.xclient.l[0] = delete
    ev.xclient.l[1] = 0  # CurrentTime
    x.XSendEvent(dpy, w, 0, 0, ctypes.byref(ev))
x.XFlush(dpy)
print(len(ids))
