"""``device``: run the virtual phone, list the devices the adb server knows."""

from __future__ import annotations

import time

import typer
from rich.console import Console

from cli.error_line import error_line

app = typer.Typer(no_args_is_help=True)


@app.command("virtual")
def virtual(
    port: int = typer.Option(5555, "--port", "-p", min=0, max=65535,
                             help="TCP port for `adb connect` (0 picks a free one)."),
    host: str = typer.Option("127.0.0.1", "--host",
                             help="Address to listen on. Keep it on loopback: anyone who can "
                             "reach the port can run shell commands as you."),
    adb_keyboard: bool = typer.Option(
        True, "--adbkeyboard/--no-adbkeyboard",
        help="Offer the ADBKeyboard IME (the broadcast that types any text). Without it, "
        "typing non-ASCII text fails, as on a phone that lacks the IME."),
) -> None:
    """Run a virtual Android phone in the foreground until Ctrl-C.

    It speaks the ADB transport protocol, so the real adb server accepts it.

    Attach it: adb connect 127.0.0.1:5555 && adb shell wm size

    Screen: 1080x2400, density 480. Apps: Flights, Contacts, Messages, Settings, Notes.

    `adb shell vphone state PACKAGE` prints an app's state as JSON.

    Its storage is a private folder, the shell's $EXTERNAL_STORAGE and working directory;
    there is no /sdcard: `uiautomator dump` writes window_dump.xml there (`uiautomator dump
    /dev/tty` prints it) and `screencap -p` prints the PNG.

    `adb shell vphone reset` restores every app's state and goes home.
    """
    from envs.virtual_phone import VirtualPhone
    from runtime.stop_signals import interrupted_status, sigterm_interrupts

    console = Console()
    with sigterm_interrupts():  # SIGTERM stops the phone and removes its folder, as Ctrl-C
        phone = VirtualPhone(port=port, host=host, adb_keyboard=adb_keyboard)
        try:
            phone.start()
        except (RuntimeError, OSError) as exc:
            Console(stderr=True).print(error_line(f"could not start the virtual phone: {exc}"),
                                       soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:  # while it starts: what started stops
            phone.stop()
            raise typer.Exit(interrupted_status()) from None
        # One line in a log too (80 columns there), where a script greps the address.
        console.print(f"virtual phone listening on [bold]{phone.serial}[/]; attach it with "
                      f"[bold]adb connect {phone.serial}[/]; Ctrl-C stops it", soft_wrap=True)
        try:
            with console.status("") as status:
                while phone.running:
                    status.update(_status_line(phone))
                    time.sleep(0.5)  # the status line's refresh rate
        except KeyboardInterrupt:
            pass
        else:  # it went offline by itself
            console.print("[red]error:[/] the virtual phone went offline: its chromium closed "
                          "or crashed", soft_wrap=True)
            raise typer.Exit(1)
        finally:
            phone.stop()
    console.print("virtual phone stopped")


def _status_line(phone) -> str:
    try:
        foreground = phone.foreground()
    except Exception as exc:  # noqa: BLE001 - a status line must not kill the phone
        foreground = f"? ({exc})"
    hosts = phone.connections
    return (f"{phone.serial}  ·  {hosts} adb connection{'s' if hosts != 1 else ''}  ·  "
            f"foreground {foreground}  ·  ADBKeyboard {'on' if phone.adb_keyboard else 'off'}")


#: Hosts that name this machine's adb server.
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


@app.command("list")
def list_devices(
    adb_host: str = typer.Option("127.0.0.1", "--adb-host", help="Host of the adb server."),
    adb_port: int = typer.Option(
        None, "--adb-port", min=1, max=65535,
        help="Port of the adb server (default: $ANDROID_ADB_SERVER_PORT, else 5037, as adb picks it)."),
) -> None:
    """List the devices attached to the adb server, with their state and model."""
    from rich.table import Table

    from envs.android import adb_client, adb_server_port, device_state, list_devices
    from envs.base import EnvError

    console = Console()
    try:
        port = adb_port or adb_server_port()
        # A client that never starts a server: a server that goes away meanwhile is an error.
        infos = list_devices(adb_client(adb_host, port, timeout_s=10))
    except (OSError, EnvError) as exc:
        # A plain start-server starts one on adb's default port, not necessarily this one, and
        # only on this machine, listening on localhost.
        start = (f"start it with `adb -P {port} start-server`" if adb_host in LOCAL_HOSTS else
                 f"start it on {adb_host} with `adb -a -P {port} nodaemon server` (-a: on "
                 "every interface)")
        hint = "" if isinstance(exc, EnvError) else f"; {start}"
        Console(stderr=True).print(error_line(f"{exc}{hint}"), soft_wrap=True)
        raise typer.Exit(2) from None
    if not infos:
        console.print("no devices attached; plug in a phone with USB debugging on, "
                      "`adb connect HOST:PORT`, or start one with "
                      "`python agent_cli.py device virtual --port 5555`")
        return
    table = Table("serial", "state", "model", "product")
    for info in infos:
        table.add_row(info.serial, device_state(info.state), info.tags.get("model", ""),
                      info.tags.get("product", ""))
    console.print(table)
