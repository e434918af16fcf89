"""The soak's verdict (acceptance/soak.py): memory growth is measured after the warm-up, from the median of the first
samples to the median of the last, and judged against both a share and a size; the error rate against its bound.
The soak itself runs against a platform in tests/test_operations.py (short form)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "acceptance"))
from soak import MIB, MemoryTrace, verdict  # noqa: E402


def trace(series: dict[str, list[float]], every: float = 10.0) -> MemoryTrace:
    """Samples every `every` seconds, RSS in MiB by process."""
    length = len(next(iter(series.values())))
    return MemoryTrace(
        [(i * every, {name: int(values[i] * MIB) for name, values in series.items()}) for i in range(length)]
    )


def test_growth_counts_from_the_end_of_the_warm_up_and_ignores_one_spike():
    memory = trace(
        {
            "catalog": [50, 90, 100, 101, 100, 180, 100, 102, 101, 102],
            "leaky": [50, 60, 100, 120, 140, 160, 180, 200, 220, 240],
        }
    )
    growth = memory.growth(warmup=20.0)
    assert growth["catalog"]["after_warmup_mib"] == 100.0 and growth["catalog"]["end_mib"] == 102.0
    assert growth["catalog"]["max_mib"] == 180.0  # the spike is reported, not taken for growth
    assert growth["leaky"]["growth_mib"] == 100.0 and growth["leaky"]["growth"] == 0.8333
    summary = {"error_rate": 0.0}
    assert verdict(summary, growth, 0.001, 0.25, 16.0) == ["leaky grew 83.3% (100.0 MiB) after the warm-up"]


def test_small_processes_growing_a_few_pages_and_processes_not_seen_throughout_pass():
    memory = trace({"exporter": [4, 4, 4, 6, 6, 6]})
    memory.samples.append((60.0, {"exporter": 6 * MIB, "backend 42": 30 * MIB}))  # a connection opened late
    growth = memory.growth(warmup=10.0)
    assert set(growth) == {"exporter"} and growth["exporter"]["growth"] == 0.5
    assert verdict({"error_rate": 0.0}, growth, 0.001, 0.25, 16.0) == []


def test_an_error_rate_over_the_bound_fails_the_soak():
    assert verdict({"error_rate": 0.002}, {}, 0.001, 0.25, 16.0) == ["error rate 0.200% is over 0.100%"]
    assert verdict({"error_rate": 0.001}, {}, 0.001, 0.25, 16.0) == []
    assert MemoryTrace().growth(warmup=0.0) == {}
