"""A latency device as one object: `Device("cpu")` predicts an arch's latency (calling it does the same, so it
goes wherever a `latency_fn(arch) -> ms` is expected) and, when the device is this machine (`live: true`),
measures whole networks the one way mnas measures them (mnas.latency.profile.measure_archs: alone and warm)."""
from __future__ import annotations

from mnas.errors import UserError
from mnas.latency.predict import machine_speed, predict
from mnas.latency.profile import measure_archs
from mnas.latency.table import load_device
from mnas.nn.arch import ArchConfig


class Device:
    """conf/device/<name>.yaml with its predictor and, for a live device, its measuring stick. An unknown name
    is a one-line UserError listing the known ones."""

    def __init__(self, name: str):
        self.config = load_device(name)
        self.name = self.config["name"]

    def __repr__(self) -> str:
        return f"Device({self.name!r})"

    @property
    def live(self) -> bool:
        """Whole networks can be measured on this machine (a measured device with `live: true`)."""
        return bool(self.config.get("live"))

    def predict(self, arch: ArchConfig) -> float:
        """Predicted latency in ms at the arch's deployment shape (mnas.latency.predict)."""
        return predict(arch, self.name)

    __call__ = predict

    def measure(self, archs: list[ArchConfig], repeats: int = 100, progress: bool = False) -> list[float]:
        """Measured latency in ms of each network, run alone and warm with the device's runtime, threads and
        statistic; a device that is not this machine is a UserError."""
        if not self.live:
            raise UserError(f"device {self.name!r} is not measured on this machine: only its predictions exist")
        c = self.config
        return measure_archs(list(archs), c["runtime"], c["threads"], repeats, stat=c["stat"],
                             progress=progress, passes=c["passes"])["ms"].tolist()

    def speed(self) -> float | None:
        """This machine's speed now against its latency table's (machine_speed: > 1 faster, < 1 slower); None for
        a device that is not this machine or has no table yet."""
        return machine_speed(self.name) if self.live else None

    def measure_fn(self, repeats: int = 100, progress: bool = False):
        """`archs -> [ms]` for the benchmarks that add measured figures, or None when the device is not live."""
        return (lambda archs: self.measure(archs, repeats, progress)) if self.live else None

    def how_measured(self, repeats: int = 100) -> str:
        """How measure() times, in words ('' when it cannot)."""
        c = self.config
        passes = f", median of {c['passes']} sessions" if c["passes"] > 1 else ""
        return (f"{c['runtime']}, {c['threads']} thread(s), {c['stat']} of {repeats} warm runs{passes}, each network "
                f"alone" if self.live else "")
