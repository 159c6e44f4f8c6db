"""genret_jax.bench.machine: every benchmark's machine block and its busy verdict."""

import json
import os

import jax  # noqa: F401  (imported: its version is recorded)
import pytest

from genret_jax.bench import machine

WARNING = ("WARNING: 5.00 cores in use before the run > 1.0: ratios are not results "
           "(other jobs were running)")


def _load(monkeypatch, value: float, in_use: float | None = None) -> None:
  """Fakes the load averages and the cores in use at the start (`in_use`, else `value`)."""
  monkeypatch.setattr(os, "getloadavg", lambda: (value, value - 1, value - 2))
  monkeypatch.setattr(machine, "cpu_in_use", lambda seconds=1.0: value if in_use is None
                      else in_use)


def test_the_machine_block_has_every_field():
  block = machine.Run(max_load=1e9, also=("numpy",)).block()
  assert block["cpu_model"] and isinstance(block["cpu_model"], str)
  assert block["cpu_count"] == os.cpu_count()
  assert 1 <= block["cores_available"] <= block["cpu_count"]
  assert set(block["cpu_flags"]) == {"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}
  assert all(isinstance(v, bool) for v in block["cpu_flags"].values())
  assert {"jax", "jaxlib", "numpy"} <= set(block["versions"])
  for key in ("load_average_before", "load_average_after"):
    assert len(block[key]) == 3 and all(x >= 0 for x in block[key])
  assert block["others_cpu"] is None or block["others_cpu"] >= 0
  assert block["cpu_in_use_before"] is None or block["cpu_in_use_before"] >= 0
  assert block["memory_gib"] > 0 and block["platform"] and block["python"]
  assert block["max_load"] == 1e9 and block["busy"] is False


def test_a_high_load_average_marks_the_ratios_invalid(monkeypatch, tmp_path):
  _load(monkeypatch, 5.0)
  run = machine.Run(max_load=1.0)
  report = {"speedup_vs_hf": {"tiny": 3.0}}
  lines = run.finish(report, ratios=True, path=str(tmp_path / "r.json"))
  assert lines[0] == WARNING
  written = json.loads((tmp_path / "r.json").read_text())
  assert written["busy"] is True and written["ratios_valid"] is False
  assert written["machine"]["load_average_before"] == [5.0, 4.0, 3.0]
  assert written["speedup_vs_hf"] == {"tiny": 3.0}     # kept, marked invalid
  timings = run.warnings(report, ratios=False)[0]
  assert timings.endswith("timings are not results (other jobs were running)")


def test_an_idle_machine_gives_valid_ratios(monkeypatch, tmp_path):
  _load(monkeypatch, 0.5)
  monkeypatch.setattr(machine, "cpu_seconds_busy", lambda: 100.0)   # nobody else ran
  report = {}
  assert machine.Run(max_load=1.0).finish(report, ratios=True, path=str(tmp_path / "r.json")) == []
  assert report["busy"] is False and report["ratios_valid"] is True


def test_a_high_load_average_left_by_a_previous_bench_is_not_busy(monkeypatch, tmp_path):
  """The 1-minute load average decays over minutes: right after another bench it is ~2
  on an idle 2-core machine. The cores in use now decide."""
  _load(monkeypatch, 2.0, in_use=0.05)
  monkeypatch.setattr(machine, "cpu_seconds_busy", lambda: 100.0)   # nobody else runs
  report = {}
  assert machine.Run(max_load=1.0).finish(report, ratios=True, path=str(tmp_path / "r.json")) == []
  assert report["ratios_valid"] is True
  assert report["machine"]["load_average_before"] == [2.0, 1.0, 0.0]
  assert report["machine"]["cpu_in_use_before"] == 0.05


def test_the_cores_in_use_are_measured_from_proc_stat(monkeypatch):
  busy = iter([10.0, 11.5])
  monkeypatch.setattr(machine, "cpu_seconds_busy", lambda: next(busy))
  clock = iter([0.0, 1.0])
  monkeypatch.setattr(machine.time, "monotonic", lambda: next(clock))
  monkeypatch.setattr(machine.time, "sleep", lambda s: None)
  assert machine.cpu_in_use() == 1.5


def test_other_processes_cpu_during_the_run_makes_it_busy(monkeypatch, tmp_path):
  """The load average after the run counts the bench's own threads: the CPU time of
  other processes (all CPU time less this process's) decides instead."""
  _load(monkeypatch, 0.5)
  busy_seconds = iter([0.0, 1e6])          # others used ~all the CPU since the start
  monkeypatch.setattr(machine, "cpu_seconds_busy", lambda: next(busy_seconds))
  report = {}
  lines = machine.Run(max_load=1.0).finish(report, ratios=True, path=str(tmp_path / "r.json"))
  assert report["busy"] is True and report["ratios_valid"] is False
  assert lines and "other processes' CPU" in lines[0] and "ratios are not results" in lines[0]


def test_strict_load_exits_before_the_work_or_after_writing(monkeypatch, tmp_path):
  _load(monkeypatch, 5.0)
  with pytest.raises(SystemExit, match="--strict_load"):
    machine.Run(max_load=1.0, strict=True)
  _load(monkeypatch, 0.5)
  run = machine.Run(max_load=1.0, strict=True)     # idle at the start: runs
  _load(monkeypatch, 5.0)
  monkeypatch.setattr(machine, "cpu_seconds_busy", lambda: None)   # the load after decides
  with pytest.raises(SystemExit, match="load average after the run 5.00 > 1.0"):
    run.finish({}, ratios=True, path=str(tmp_path / "r.json"))
  assert json.loads((tmp_path / "r.json").read_text())["ratios_valid"] is False
