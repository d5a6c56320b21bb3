"""``--executor ray`` without ``--ray-address`` starts a local Ray instance with ``--workers``
CPUs, as docs/bench.md says, even where Ray would otherwise look for a cluster to join: a
``RAY_ADDRESS`` in the environment, or the last cluster ``ray start`` ran on this machine
(``/tmp/ray/ray_current_cluster``, left behind when it was killed). Ray then refused the CPU
count with a ValueError traceback."""

from __future__ import annotations

from runtime.bench.plan import BenchSettings
from runtime.bench.runner import run_bench
from tests.bench_fakes import RIGHT


def test_a_ray_run_without_an_address_starts_its_own_instance(tmp_path, monkeypatch):
    import ray

    # Where Ray looks for a cluster to join when no address is given; nothing answers there.
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
    settings = BenchSettings(suite="fake", episodes=1, seed=3, model="scripted")
    try:
        run = run_bench(settings, tmp_path, runner=RIGHT, executor="ray", workers=2)
        assert ray.cluster_resources().get("CPU") == 2
    finally:
        ray.shutdown()
    assert run.summary.overall.successes == 2 and run.summary.overall.errors == 0
