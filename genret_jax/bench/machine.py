"""The machine a benchmark ran on, and whether other jobs were running (every bench uses it).

Every benchmark's JSON gets a `machine` block (Run.block):

  cpu_model            /proc/cpuinfo "model name" (else platform.processor())
  cpu_count            os.cpu_count(): the machine's logical CPUs
  cores_available      len(os.sched_getaffinity(0)): the CPUs this process may use
  cpu_flags            {flag: present} for FLAGS_OF_INTEREST (AVX-512, bf16, AMX)
  memory_gib, platform, python
  versions             jax / jaxlib / torch / transformers of the modules imported
                       (plus the packages a bench names, e.g. its workers' jax)
  load_average_before  os.getloadavg() (1, 5, 15 min) when the bench started
  cpu_in_use_before    cores' worth of CPU time all processes used over the
                       1 s sample before the bench started (/proc/stat); null
                       where /proc/stat is missing
  load_average_after   the same when the block was written
  others_cpu           cores' worth of CPU time the *other* processes used while
                       the bench ran: /proc/stat's busy time minus this process's
                       and its children's (getrusage), over the wall time; null
                       where /proc/stat is missing
  max_load             the threshold (--max_load, default 1.0)
  busy                 see below

and the report itself gets `busy` (and, in a bench that reports ratios between
sides, `ratios_valid` = not busy).

Busy: more than --max_load cores were in use in the 1 s sample before the run
(cpu_in_use_before), or other processes used more than --max_load cores on
average during it (others_cpu). The load averages are recorded but decide only
where /proc/stat cannot be read: the 1-minute average decays over minutes, so a
bench run just before this one (or this bench's own threads, after it) would
mark an idle machine busy.
A busy run prints `WARNING: N cores in use before the run > 1.0: ratios are not
results (other jobs were running)` (or `timings are not results` in a bench without ratios)
under its table; with --strict_load it exits non-zero instead: at the start
when the machine is already busy (no work done), else after writing its JSON
(marked busy) without printing the table.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import resource
import sys
import time

from absl import flags

_MAX_LOAD = flags.DEFINE_float(
    "max_load", 1.0, "Above this many cores in use just before the run (or this many cores "
    "used by other processes during it) the run is busy: its ratios are not results.")
_STRICT_LOAD = flags.DEFINE_bool("strict_load", False,
                                 "Exit non-zero instead of reporting a busy run.")

FLAGS_OF_INTEREST = ("avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
VERSIONED = ("jax", "jaxlib", "torch", "transformers")
WARNING = "WARNING: {what} > {max_load}: {kind} are not results (other jobs were running)"


def load_average() -> list[float]:
  """[1, 5, 15]-minute load averages, rounded to 0.01."""
  return [round(x, 2) for x in os.getloadavg()]


def _cpuinfo_field(name: str) -> str | None:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.split(":", 1)[0].strip() == name:
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return None


def cpu_model() -> str:
  return _cpuinfo_field("model name") or platform.processor()


def cpu_flags() -> dict[str, bool]:
  """{flag: present} for FLAGS_OF_INTEREST (all False where /proc/cpuinfo is missing)."""
  present = set((_cpuinfo_field("flags") or "").split())
  return {f: f in present for f in FLAGS_OF_INTEREST}


def cores_available() -> int:
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:       # not on Linux
    return os.cpu_count() or 0


def memory_gib() -> float:
  try:
    with open("/proc/meminfo") as f:
      return round(float(f.readline().split()[1]) / 2**20, 1)
  except (OSError, IndexError, ValueError):
    return 0.0


def versions(also: tuple[str, ...] = ()) -> dict[str, str]:
  """{package: version} of the VERSIONED modules imported here, and of `also`."""
  out = {}
  for name in dict.fromkeys((*VERSIONED, *also)):
    if name in sys.modules or name in also:
      try:
        out[name] = importlib.metadata.version(name)
      except importlib.metadata.PackageNotFoundError:
        pass
  return out


def cpu_seconds_busy() -> float | None:
  """Seconds of CPU time all processes have used since boot (/proc/stat), or None."""
  try:
    with open("/proc/stat") as f:
      fields = [int(x) for x in f.readline().split()[1:]]
  except (OSError, ValueError):
    return None
  # user nice system idle iowait irq softirq steal (guest time is inside user)
  busy = sum(fields[:3]) + sum(fields[5:8])
  return busy / os.sysconf("SC_CLK_TCK")


def cpu_in_use(seconds: float = 1.0) -> float | None:
  """Cores' worth of CPU time all processes use over a `seconds` sample, or None."""
  t0, b0 = time.monotonic(), cpu_seconds_busy()
  if b0 is None:
    return None
  time.sleep(seconds)
  b1 = cpu_seconds_busy()
  return round((b1 - b0) / (time.monotonic() - t0), 2) if b1 is not None else None


def own_cpu_seconds() -> float:
  """CPU seconds of this process and of the children it has waited for."""
  s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
  return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


class Run:
  """One benchmark run: the load when it starts, its machine block and busy verdict.

  Args:
    max_load: the busy threshold (cores in use just before; cores used by
      other processes during the run).
    strict: exit non-zero (SystemExit with a message) instead of reporting a
      busy run; checked here first, before any work.
    also: packages whose versions the block records even when not imported
      here (a bench whose workers import them).
  """

  def __init__(self, max_load: float = 1.0, strict: bool = False, also: tuple[str, ...] = ()):
    self.max_load, self.strict, self.also = max_load, strict, also
    self.before = load_average()
    self.in_use_before = cpu_in_use()
    self._t0, self._own0, self._all0 = time.monotonic(), own_cpu_seconds(), cpu_seconds_busy()
    if strict and self._busy_at_start():
      sys.exit(f"{self._start_reason()} > {max_load} before the run "
               "(--strict_load): not running (other jobs are running)")

  def _busy_at_start(self) -> bool:
    if self.in_use_before is not None:
      return self.in_use_before > self.max_load
    return self.before[0] > self.max_load

  def _start_reason(self) -> str:
    if self.in_use_before is not None:
      return f"{self.in_use_before:.2f} cores in use before the run"
    return f"load average {self.before[0]:.2f}"

  @classmethod
  def from_flags(cls, also: tuple[str, ...] = ()) -> "Run":
    return cls(_MAX_LOAD.value, _STRICT_LOAD.value, also)

  def others_cpu(self) -> float | None:
    """Cores' worth of CPU time used by other processes since the start, or None."""
    now = cpu_seconds_busy()
    wall = time.monotonic() - self._t0
    if now is None or self._all0 is None or wall <= 0:
      return None
    others = (now - self._all0) - (own_cpu_seconds() - self._own0)
    return round(max(others, 0.0) / wall, 2)

  def block(self) -> dict:
    """The machine block now (load after = now)."""
    after, others = load_average(), self.others_cpu()
    return {"cpu_model": cpu_model(), "cpu_count": os.cpu_count(),
            "cores_available": cores_available(), "cpu_flags": cpu_flags(),
            "memory_gib": memory_gib(), "platform": platform.platform(),
            "python": platform.python_version(), "versions": versions(self.also),
            "load_average_before": self.before, "load_average_after": after,
            "cpu_in_use_before": self.in_use_before,
            "others_cpu": others, "max_load": self.max_load,
            "busy": bool(self.reasons(after[0], others))}

  def reasons(self, load_after: float, others: float | None) -> list[str]:
    """What made the run busy ('load average 3.70', ...); [] when it was not."""
    out = []
    if self._busy_at_start():
      out.append(self._start_reason())
    if others is not None and others > self.max_load:
      out.append(f"other processes' CPU {others:.2f} cores")
    if others is None and load_after > self.max_load:
      out.append(f"load average after the run {load_after:.2f}")
    return out

  def stamp(self, report: dict, ratios: bool) -> dict:
    """Adds `machine`, `busy` and (when the bench reports ratios) `ratios_valid`."""
    report["machine"] = self.block()
    report["busy"] = report["machine"]["busy"]
    if ratios:
      report["ratios_valid"] = not report["busy"]
    return report

  def warnings(self, report: dict, ratios: bool) -> list[str]:
    """The WARNING lines of a stamped report ([] when it was not busy)."""
    m = report["machine"]
    kind = "ratios" if ratios else "timings"
    return [WARNING.format(what=r, max_load=self.max_load, kind=kind)
            for r in self.reasons(m["load_average_after"][0], m["others_cpu"])]

  def finish(self, report: dict, ratios: bool, path: str) -> list[str]:
    """Stamps `report` and writes it (JSON) to `path`; returns the WARNING lines.

    Under --strict_load a busy run exits here, non-zero, after writing (its
    JSON says busy) and before the caller prints its table.
    """
    self.stamp(report, ratios)
    with open(path, "w") as f:
      json.dump(report, f, indent=1)
    lines = self.warnings(report, ratios)
    if lines and self.strict:
      sys.exit("\n".join(lines) + "\n--strict_load: no result reported")
    return lines
