"""One beat instance on a simulated clock, for the failover test (run as a subprocess).

    python -m tests.beat.ha_instance <instance id> <sim start> <real start> <speed> <sim end>

Simulated time = sim start + (real time - real start) * speed, shared by all instances.
The Redis lease still expires in real time: that is what a SIGKILL leaves behind.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time


def main() -> None:
    instance, sim_start, real_start, speed, sim_end = sys.argv[1:6]
    sim_start, real_start, speed, sim_end = (float(sim_start), float(real_start),
                                             float(speed), float(sim_end))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django

    django.setup()
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {instance} %(message)s")
    from automation.beat.conf import load_config
    from automation.beat.scheduler import BeatScheduler
    from config.celery import app

    def clock() -> float:
        return sim_start + (time.time() - real_start) * speed

    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    scheduler = BeatScheduler(app, clock=clock, instance_id=instance, config=load_config(
        lease_seconds=1.0, sync_seconds=30, max_interval=60, prepare_seconds=0,
        # A wide window: on a loaded machine start-up can take minutes of simulated time,
        # and this test is about exactly-once, not about the window (test_leader has that).
        reconcile_seconds=0, catchup_seconds=6 * 3600))
    try:
        while not stopping and clock() < sim_end:
            wait = scheduler.tick()
            # Sleep in real seconds; at least 20 ms so two instances do not spin.
            time.sleep(min(max(wait / speed, 0.02), 0.2))
    finally:
        scheduler.close()


if __name__ == "__main__":
    main()
