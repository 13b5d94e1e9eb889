"""scripts/respawn: a process of the demo stack that dies is started again, not left dead."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_dying_process_is_restarted_and_sigterm_stops_it(tmp_path: Path) -> None:
    """The command exits twice and is started again each time; SIGTERM ends the loop and
    the command it runs, with no process left behind."""
    marker = tmp_path / "starts"
    script = (f'echo start >> {marker}; n=$(wc -l < {marker}); '
              f'[ "$n" -ge 3 ] && exec sleep 60; exit 1')
    proc = subprocess.Popen([str(ROOT / "scripts" / "respawn"), "sh", "-c", script],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and (not marker.exists()
                                           or marker.read_text().count("start") < 3):
        time.sleep(0.1)
    assert marker.read_text().count("start") == 3  # 1 s, then 2 s backoff
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert output.count("exited with status 1; starting it again") == 2
    leftover = subprocess.run(["pgrep", "-f", f"echo start >> {marker}"], capture_output=True)
    assert leftover.stdout == b""
