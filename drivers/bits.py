"""Bit tables: a BMS's alarm or protection word <-> the shared Protection and Alarm flags.

Every protocol reports its conditions as bits in a word or a run of bytes, and every codec needs
the same two directions: decode (which flags are set, and the names of the set bits for
`extra`) and encode for the simulator (each flag at the first bit that stands for it, which is
enough for a round trip). The tables stay data in each codec; this is the code, once.

A bit's position counts from bit 0 of the word; a table written per byte (byte n, bit b) is
position 8n + b of the bytes read little-endian (`BitTable.by_byte`, `decode_bytes`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

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
    __slots__ = ("bits",)

    def __init__(self, bits: Iterable[Bit]) -> None:
        self.bits = tuple(bits)

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
        return word

    def encode_bytes(
        self, protections: Protection | None, alarms: Alarm | None, size: int
    ) -> bytes:
        return self.encode(protections, alarms).to_bytes(size, "little")

    def alarms(self) -> set[Alarm]:
        """Every alarm some bit stands for."""
        return {b.alarm for b in self.bits if b.alarm is not None}
