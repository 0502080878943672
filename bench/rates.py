"""The open-loop rates of --rates: requests per second (`1000`), or a fraction of the closed-loop
maximum measured earlier in the same run (`0.5x`), so that "half the maximum" means the same
load on any machine.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rate:
    value: float
    relative: bool  # value is a fraction of the closed loop's acked/s

    @property
    def label(self) -> str:
        """How the phase is named: open-1000, open-0.5x."""
        return f"{self.value:g}x" if self.relative else f"{self.value:g}"

    def resolve(self, closed_acked_rps: float) -> float:
        """Requests per second; a fraction is rounded to a whole number."""
        if not self.relative:
            return self.value
        rate = round(self.value * closed_acked_rps)
        if rate < 1:
            raise ValueError(
                f"{self.label} of a closed loop that acknowledged {closed_acked_rps:.1f}/s "
                "is no rate"
            )
        return float(rate)


def parse(text: str) -> list[Rate]:
    """`1000,0.5x,0.75x` -> rates; ValueError says which token is wrong."""
    rates = []
    for token in (t.strip() for t in text.split(",")):
        if not token:
            continue
        relative = token.endswith("x")
        try:
            value = float(token.removesuffix("x"))
        except ValueError:
            raise ValueError(f"{token!r} is neither a rate nor a fraction like 0.5x") from None
        if not value > 0 or value == float("inf"):
            raise ValueError(f"{token!r}: a rate must be a positive number")
        rates.append(Rate(value, relative))
    return rates
