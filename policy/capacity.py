"""Adaptive thresholds: keep each port's machine-check and inspect rates near their targets.

One controller state per (port, lane). For every decided declaration of the port the lane sees
``x = 1`` if the declaration-time action is that lane, else 0, and updates

    rate     <- rate + a * (x - rate)                       a from ``half_life`` (declarations)
    integral <- clamp(integral + gain_i * (x - T) / T)     T: the lane's target rate
    offset    = clamp(integral + gain_p * (rate - T) / T)   clamp: +-max_offset

``offset`` is added to the lane's configured model threshold (positive: stricter selection,
i.e. fewer declarations selected). The integral term is a stochastic-approximation quantile
tracker: it only comes to rest when selections occur at exactly the target rate, whatever the
score distribution, so the long-run realised rate equals the target; the proportional term on
the smoothed rate speeds up the reaction to a shift. Every selection counts towards the load,
whatever its reason (rules, risk lists and random selections occupy officers too), but only the
model thresholds move. The credit-class bounds are applied in ``policy.decide``, after the offset:
the controller cannot push AEO below its floor or the focus list above its ceiling.

Deterministic: the same configuration and the same sequence of observations give the same
offsets, bit for bit (plain float arithmetic, no clocks, no randomness), and the state
round-trips exactly through :meth:`to_bytes` / :meth:`from_bytes`.

Only the ports of the policy's register are ever held (others are not adapted: offset 0), so
the state and its changelog record are bounded by the register, never by what gateways send.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import orjson

from policy.config import Capacity, LaneTargets
from schemas import Action

STATE_VERSION = 1


@dataclass(frozen=True, slots=True)
class LaneOffsets:
    """Threshold offsets for one port (added to the configured thresholds, then bounded)."""

    machine_check: float = 0.0
    inspect: float = 0.0


NO_OFFSETS = LaneOffsets()


class _Lane:
    __slots__ = ("integral", "rate")

    def __init__(self, rate: float, integral: float) -> None:
        self.rate = rate
        self.integral = integral


class CapacityController:
    """Online controller for all ports; cheap enough to call for every declaration."""

    def __init__(self, config: Capacity, ports: Collection[str]) -> None:
        self.config = config
        self.registered = frozenset(ports)  # the policy's port register: no other port is ever held
        self._alpha = 1.0 - 0.5 ** (1.0 / config.controller.half_life)
        # port -> (machine-check lane, inspect lane); None where the lane has no target.
        self._ports: dict[str, tuple[_Lane | None, _Lane | None]] = {}
        self._counts: dict[str, int] = {}
        self._targets: dict[str, LaneTargets] = {}  # port -> its lane targets (looked up once per port)

    def _lanes(self, port: str) -> tuple[_Lane | None, _Lane | None]:
        lanes = self._ports.get(port)
        if lanes is None:
            t = self._targets[port] = self.config.targets_for(port)
            # Start at the target: no burst of corrections before the average has warmed up.
            lanes = (_Lane(t.machine_check, 0.0) if t.machine_check else None,
                     _Lane(t.inspect, 0.0) if t.inspect else None)
            self._ports[port] = lanes
            self._counts[port] = 0
        return lanes

    def _offset(self, lane: _Lane | None, target: float | None) -> float:
        if lane is None or not target:
            return 0.0
        c = self.config.controller
        raw = lane.integral + c.gain_p * (lane.rate - target) / target
        return min(c.max_offset, max(-c.max_offset, raw))

    def offsets(self, port: str) -> LaneOffsets:
        """The offsets to decide this port's next declaration with."""
        lanes = self._ports.get(port)
        if lanes is None:
            return NO_OFFSETS
        t = self._targets[port]
        return LaneOffsets(self._offset(lanes[0], t.machine_check), self._offset(lanes[1], t.inspect))

    def observe(self, port: str, action: Action) -> None:
        """Record the declaration-time action of one decided declaration of ``port`` (a port
        outside the register is not adapted, and not kept)."""
        if port not in self.registered:
            return
        mc, ins = self._lanes(port)
        t = self._targets[port]
        self._counts[port] += 1
        if mc is not None and t.machine_check:
            self._step(mc, t.machine_check, action is Action.MACHINE_CHECK)
        if ins is not None and t.inspect:
            self._step(ins, t.inspect, action is Action.INSPECT)

    def _step(self, lane: _Lane, target: float, selected: bool) -> None:
        c = self.config.controller
        x = 1.0 if selected else 0.0
        lane.rate += self._alpha * (x - lane.rate)
        # Anti-windup: the integral alone never exceeds the offset limit.
        lane.integral = min(c.max_offset, max(-c.max_offset, lane.integral + c.gain_i * (x - target) / target))

    def realised(self, port: str) -> dict[str, float | None]:
        """The smoothed realised rate per lane (for metrics)."""
        mc, ins = self._ports.get(port, (None, None))
        return {Action.MACHINE_CHECK.value: mc.rate if mc else None, Action.INSPECT.value: ins.rate if ins else None}

    def observed(self, port: str) -> int:
        return self._counts.get(port, 0)

    def ports(self) -> list[str]:
        return sorted(self._ports)

    # ---- persistence -----------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """JSON, ports sorted; floats are written in their shortest exact form, so a restored
        controller continues bit for bit where this one stopped."""
        ports = {}
        for port in sorted(self._ports):
            mc, ins = self._ports[port]
            ports[port] = {
                "n": self._counts[port],
                "machine_check": [mc.rate, mc.integral] if mc else None,
                "inspect": [ins.rate, ins.integral] if ins else None,
            }
        return orjson.dumps({"v": STATE_VERSION, "ports": ports})

    @classmethod
    def from_bytes(cls, raw: bytes | None, config: Capacity, ports: Collection[str]) -> CapacityController:
        """Restore a state (None or empty: a fresh controller). A lane whose target was removed
        from the policy is dropped; a lane that gained a target starts fresh; a port no longer in
        the register (or never in it: a record written before there was one) is dropped."""
        ctrl = cls(config, ports)
        if not raw:
            return ctrl
        doc = orjson.loads(raw)
        if doc.get("v") != STATE_VERSION:
            return ctrl  # an unknown layout: adapting again from scratch is safe, guessing is not
        for port, saved in doc["ports"].items():
            if port not in ctrl.registered:
                continue
            lanes = ctrl._lanes(port)
            ctrl._counts[port] = int(saved["n"])
            for lane, name in zip(lanes, ("machine_check", "inspect")):
                if lane is not None and saved.get(name) is not None:
                    lane.rate, lane.integral = float(saved[name][0]), float(saved[name][1])
        return ctrl
