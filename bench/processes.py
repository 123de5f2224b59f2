"""What the benchmark scripts share: settings from the environment, and stopping a server."""
import os
import subprocess


def env_int(name, default):
    """`name` from the environment as a whole number; unset or blank gives `default`."""
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


def stop(process):
    """Stops a child: SIGTERM, then SIGKILL if it is not gone within 10 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
