#!/usr/bin/python3
"""A StatusNotifierWatcher on the session bus, for the app's end-to-end test.

A desktop's panel (GNOME Shell's AppIndicator extension, KDE's system tray, waybar) owns
org.kde.StatusNotifierWatcher; tray icons (the app's, through libayatana-appindicator)
register with it, and the panel then reads each item's menu over D-Bus. Xvfb has no panel,
so the test runs this one: it registers items like a panel does and writes one line per
item to the file named by its argument: "<bus name> <object path>". The test then reads
the item's menu itself (com.canonical.dbusmenu.GetLayout through gdbus), as a panel would.

Usage: sni_watcher.py LOG  (runs until killed; "ready" is written once the name is owned)
"""

import sys

from gi.repository import Gio, GLib

WATCHER = "org.kde.StatusNotifierWatcher"
PATH = "/StatusNotifierWatcher"
XML = """
<node>
  <interface name="org.kde.StatusNotifierWatcher">
    <method name="RegisterStatusNotifierItem"><arg name="service" type="s" direction="in"/></method>
    <method name="RegisterStatusNotifierHost"><arg name="service" type="s" direction="in"/></method>
    <property name="RegisteredStatusNotifierItems" type="as" access="read"/>
    <property name="IsStatusNotifierHostRegistered" type="b" access="read"/>
    <property name="ProtocolVersion" type="i" access="read"/>
    <signal name="StatusNotifierItemRegistered"><arg type="s"/></signal>
    <signal name="StatusNotifierItemUnregistered"><arg type="s"/></signal>
    <signal name="StatusNotifierHostRegistered"/>
  </interface>
</node>
"""

items = []
log = open(sys.argv[1], "a", buffering=1)


def method_call(conn, sender, path, iface, method, params, invocation):
    if method == "RegisterStatusNotifierItem":
        (arg,) = params.unpack()
        # An item names itself by its object path (on the caller's connection) or its bus name.
        if arg.startswith("/"):
            service, item_path = sender, arg
        else:
            service, item_path = arg, "/StatusNotifierItem"
        items.append(service + item_path)
        log.write(f"{service} {item_path}\n")
        conn.emit_signal(
            None, PATH, WATCHER, "StatusNotifierItemRegistered", GLib.Variant("(s)", (items[-1],))
        )
    invocation.return_value(None)


def get_property(conn, sender, path, iface, name):
    if name == "RegisteredStatusNotifierItems":
        return GLib.Variant("as", items)
    if name == "IsStatusNotifierHostRegistered":
        return GLib.Variant("b", True)
    if name == "ProtocolVersion":
        return GLib.Variant("i", 0)
    return None


def on_bus(conn, name):
    info = Gio.DBusNodeInfo.new_for_xml(XML).interfaces[0]
    conn.register_object(PATH, info, method_call, get_property, None)


def on_name(conn, name):
    log.write("ready\n")


def on_lost(conn, name):
    sys.exit(f"could not own {name}")


Gio.bus_own_name(Gio.BusType.SESSION, WATCHER, Gio.BusNameOwnerFlags.NONE, on_bus, on_name, on_lost)
GLib.MainLoop().run()
