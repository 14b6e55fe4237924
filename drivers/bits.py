"""Bit tables: a BMS's alarm or protection word <-> the shared Protection and Alarm flags.

Every protocol reports its conditions as bits in a word or a run of bytes, and every codec needs
the same two directions: decode (which flags are set, and the names of the set bits for
`extra`) and encode for the simulator (each flag at the first bit that stands for it, which is
enough for a round trip). The tables stay data in each codec; this is the code, once.

A bit's position counts from bit 0 of the word; a table written per byte (byte n, bit b) is
position 8n + b of the bytes read little-endian (`BitTable.by_byte`, `decode_bytes`).

A bit the table cannot name must not vanish: `with_unknown` says which positions of the word
are condition bits (protection or warning bits, as opposed to states and switches). A set bit
there that no row names gives `Protection.UNKNOWN` (or `Alarm.UNKNOWN`) and the name
`unknown_bit_N` (N its position), so a reserved bit a firmware starts using raises `cutoff`
with its number instead of being dropped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Self

from bankwatch.drivers.model import Alarm, Protection

__all__ = ["Bit", "BitTable", "SetBits"]


@dataclass(frozen=True, slots=True)
class Bit:
    position: int
    name: str = ""
    protection: Protection | None = None
    alarm: Alarm | None = None


@dataclass(frozen=True, slots=True)
class SetBits:
    """What a word says: the flags of its set bits and their names, in table order."""

    protections: Protection
    alarms: Alarm
    names: tuple[str, ...]


class BitTable:
    __slots__ = ("bits", "unknown")

    def __init__(self, bits: Iterable[Bit]) -> None:
        self.bits = tuple(bits)
        # (positions, flag): condition bits where an unnamed set bit raises `flag`.
        self.unknown: tuple[tuple[tuple[int, ...], Protection | Alarm], ...] = ()

    def with_unknown(self, *groups: tuple[Iterable[int], Protection | Alarm]) -> Self:
        """This table, with the positions where a set bit no row names is reported as `flag`
        (Protection.UNKNOWN or Alarm.UNKNOWN; see the module docstring)."""
        named = {b.position for b in self.bits}
        self.unknown = tuple(
            (tuple(p for p in positions if p not in named), flag) for positions, flag in groups
        )
        return self

    @classmethod
    def by_byte(
        cls, rows: Iterable[tuple[int, int, str, Protection | None, Alarm | None]]
    ) -> BitTable:
        """A table written as (byte, bit, name, protection, alarm) rows."""
        return cls(Bit(8 * byte + bit, name, p, a) for byte, bit, name, p, a in rows)

    @classmethod
    def of_flags(cls, rows: Iterable[tuple[int, int, Protection | Alarm]]) -> BitTable:
        """A table written as (byte, bit, flag) rows, the flag either kind."""
        return cls(
            Bit(
                8 * byte + bit,
                "",
                flag if isinstance(flag, Protection) else None,
                flag if isinstance(flag, Alarm) else None,
            )
            for byte, bit, flag in rows
        )

    def decode(self, word: int) -> SetBits:
        protections = Protection.NONE
        alarms = Alarm.NONE
        names: list[str] = []
        for b in self.bits:
            if word >> b.position & 1:
                if b.name:
                    names.append(b.name)
                if b.protection is not None:
                    protections |= b.protection
                if b.alarm is not None:
                    alarms |= b.alarm
        for positions, flag in self.unknown:
            for position in positions:
                if word >> position & 1:
                    names.append(f"unknown_bit_{position}")
                    if isinstance(flag, Protection):
                        protections |= flag
                    else:
                        alarms |= flag
        return SetBits(protections, alarms, tuple(names))

    def decode_bytes(self, data: bytes | bytearray) -> SetBits:
        return self.decode(int.from_bytes(data, "little"))

    def encode(self, protections: Protection | None, alarms: Alarm | None) -> int:
        """The word for these flags: each set flag at the first bit of the table that stands
        for it (a flag no bit stands for is not sent)."""
        word = 0
        done_p = Protection.NONE
        done_a = Alarm.NONE
        for b in self.bits:
            p, a = b.protection, b.alarm
            if p is not None and protections and p in protections and p not in done_p:
                word |= 1 << b.position
                done_p |= p
            if a is not None and alarms and a in alarms and a not in done_a:
                word |= 1 << b.position
                done_a |= a
        # An unknown condition goes out on the first position no row names.
        for positions, flag in self.unknown:
            wanted = protections if isinstance(flag, Protection) else alarms
            if positions and wanted and flag in wanted:
                word |= 1 << positions[0]
        return word

    def encode_bytes(
        self, protections: Protection | None, alarms: Alarm | None, size: int
    ) -> bytes:
        return self.encode(protections, alarms).to_bytes(size, "little")

    def alarms(self) -> set[Alarm]:
        """Every alarm some bit stands for (an unknown one included, where the table has
        positions for it)."""
        found = {b.alarm for b in self.bits if b.alarm is not None}
        found |= {f for p, f in self.unknown if p and isinstance(f, Alarm)}
        return found

    def protections(self) -> Protection:
        """Every protection some bit stands for."""
        out = Protection.NONE
        for b in self.bits:
            if b.protection is not None:
                out |= b.protection
        for positions, flag in self.unknown:
            if positions and isinstance(flag, Protection):
                out |= flag
        return out
