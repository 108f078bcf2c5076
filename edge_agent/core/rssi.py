"""RSSI smoothing per (shopper, receiver), and distance from a smoothed level. Pure.

Indoor RSSI is the true path loss plus shadowing that is roughly log-normal (sigma 3-6 dB), plus
dropouts, at a few samples per second. Three filters, chosen in ``presence.filter``:

- ``kalman``: a scalar constant-level Kalman filter whose uncertainty grows with the time since
  the last sample, so a gap after packet loss lets the next samples count more. Cheap (a few
  float operations), and on the simulator it gives the best zone-time accuracy (README table).
- ``median``: the median of the samples in the last ``filter_window_s``; robust to single
  outliers but lags a walking shopper by half a window.
- ``none``: the last sample, the baseline the others are measured against.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from edge_agent.core.settings import PresenceSettings


class KalmanLevel:
    __slots__ = ("_q", "_r", "_variance", "last_ts", "value")

    def __init__(self, rssi: float, ts: float, process_noise: float, measurement_noise: float) -> None:
        self.value = float(rssi)
        self.last_ts = ts
        self._q = process_noise
        self._r = measurement_noise
        self._variance = measurement_noise

    def update(self, rssi: float, ts: float) -> float:
        elapsed = max(0.0, ts - self.last_ts)
        variance = self._variance + self._q * elapsed
        gain = variance / (variance + self._r)
        self.value += gain * (rssi - self.value)
        self._variance = (1.0 - gain) * variance
        self.last_ts = max(self.last_ts, ts)
        return self.value


class WindowMedian:
    __slots__ = ("_samples", "_window", "last_ts", "value")

    def __init__(self, rssi: float, ts: float, window_s: float) -> None:
        self._window = window_s
        self._samples: deque[tuple[float, float]] = deque([(ts, float(rssi))], maxlen=32)
        self.value = float(rssi)
        self.last_ts = ts

    def update(self, rssi: float, ts: float) -> float:
        samples = self._samples
        samples.append((ts, float(rssi)))
        while samples[0][0] < ts - self._window:
            samples.popleft()
        ordered = sorted(value for _, value in samples)
        middle = len(ordered) // 2
        self.value = ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
        self.last_ts = max(self.last_ts, ts)
        return self.value


class LastSample:
    __slots__ = ("last_ts", "value")

    def __init__(self, rssi: float, ts: float) -> None:
        self.value = float(rssi)
        self.last_ts = ts

    def update(self, rssi: float, ts: float) -> float:
        self.value = float(rssi)
        self.last_ts = max(self.last_ts, ts)
        return self.value


Level = KalmanLevel | WindowMedian | LastSample


def level_factory(settings: PresenceSettings) -> Callable[[float, float], Level]:
    """A constructor for the configured filter, taking the first sample and its time."""
    if settings.filter == "kalman":
        q, r = settings.kalman_process_noise, settings.kalman_measurement_noise
        return lambda rssi, ts: KalmanLevel(rssi, ts, q, r)
    if settings.filter == "median":
        window = settings.filter_window_s
        return lambda rssi, ts: WindowMedian(rssi, ts, window)
    return LastSample


def distance_m(rssi: float, measured_power_dbm: float, path_loss_exponent: float) -> float:
    """Log-distance model: RSSI falls by 10·n dB per decade of distance from 1 m."""
    return float(10 ** ((measured_power_dbm - rssi) / (10 * path_loss_exponent)))
