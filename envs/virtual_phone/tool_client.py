"""The phone's shell tools (``input``, ``screencap``, ``am``...): one stdlib-only script.

The phone installs it once under each tool name in a private bin directory on the shell's PATH.
Invoked as ``input tap 1 2``, it sends its name and arguments to the phone's tool server
(tool_server.py; port and token come from the environment the phone's shell runs in) and prints
the answer.
Keep it free of non-stdlib imports: it runs as ``python -S`` for a fast start.
"""

import json
import os
import signal
import socket
import sys


def main() -> int:
    argv = [os.path.basename(sys.argv[0]), *sys.argv[1:]]
    try:
        port, token = int(os.environ["VPHONE_TOOL_PORT"]), os.environ["VPHONE_TOKEN"]
    except (KeyError, ValueError):
        sys.stderr.write(f"{argv[0]}: not running inside the virtual phone's shell\n")
        return 1
    try:
        with socket.create_connection(("127.0.0.1", port)) as conn:
            conn.sendall(json.dumps({"token": token, "argv": argv}).encode() + b"\n")
            stream = conn.makefile("rb")
            header = json.loads(stream.readline())
            stdout, stderr, message = (stream.read(n) for n in header["lengths"])
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"{argv[0]}: the phone did not answer ({exc})\n")
        return 1
    if header["file"]:
        try:
            with open(header["file"], "wb") as out:
                out.write(stdout)
        except OSError as exc:
            sys.stderr.write(f"{argv[0]}: cannot write {header['file']}: {exc.strerror}\n")
            return 1
        stdout = message
    # A reader that goes (`screencap | head -c 16`) ends the tool quietly, as a device's own
    # tools end, where Python printed a BrokenPipeError traceback. Not before: a phone that
    # hangs up is said, above.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.stdout.buffer.write(stdout)
    sys.stdout.buffer.flush()
    sys.stderr.buffer.write(stderr)
    return header["code"]


if __name__ == "__main__":
    sys.exit(main())
