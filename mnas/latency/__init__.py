"""Latency of an ArchConfig on a device: op tables (table), live profiling (profile), calibrated predict (predict),
and Device (device), which holds a device's predictor and, on this machine, its measurement."""
from mnas.latency.device import Device
from mnas.latency.predict import predict
from mnas.latency.profile import measure_arch, profile_ops
from mnas.latency.table import load_table

__all__ = ["Device", "load_table", "predict", "measure_arch", "profile_ops"]
