#!/usr/bin/env python3
"""Rebuilds the corpus of the built-in workload from Debian's r-cran-janeaustenr package.

    apt-get download r-cran-janeaustenr && dpkg-deb -x r-cran-janeaustenr_*.deb pkg
    python3 extract_janeaustenr.py pkg/usr/lib/R/site-library/janeaustenr/data/Rdata.rdb

The package stores each novel as an R character vector (one element per line) in R's lazy-load
database: zlib-compressed blobs of R's XDR serialization. This reads just enough of that format
(no R needed) and writes persuasion.txt and pride-and-prejudice.txt, lines joined with "\n".
"""
import struct
import sys
import zlib

WANT = {"PRIDE AND PREJUDICE": "pride-and-prejudice.txt", "Persuasion": "persuasion.txt"}


def blobs(data):
    pos = 0
    while pos < len(data):
        d = zlib.decompressobj()
        yield d.decompress(data[pos + 4:])  # 4-byte big-endian length, then zlib
        pos = len(data) - len(d.unused_data)


class Reader:
    def __init__(self, b):
        self.b, self.p = b, 0

    def int(self):
        v = struct.unpack(">i", self.b[self.p:self.p + 4])[0]
        self.p += 4
        return v

    def item(self):
        flags = self.int()
        kind, has_attr, has_tag = flags & 0xFF, flags & (1 << 9), flags & (1 << 10)
        if kind == 254:  # NILVALUE
            return None
        if kind == 9:  # CHARSXP
            n = self.int()
            if n == -1:
                return None
            s = self.b[self.p:self.p + n]
            self.p += n
            return s.decode("utf-8")
        if kind in (16, 19):  # STRSXP, VECSXP
            v = [self.item() for _ in range(self.int())]
            if has_attr:
                self.item()
            return v
        if kind == 2:  # pairlist (attributes)
            if has_attr:
                self.item()
            if has_tag:
                self.item()
            return (self.item(), self.item())
        if kind == 1:  # SYMSXP
            return self.item()
        if kind == 13:  # INTSXP
            n = self.int()
            self.p += 4 * n
            if has_attr:
                self.item()
            return None
        if kind == 255:  # REFSXP
            self.int()
            return None
        raise ValueError(f"unexpected R type {kind} at byte {self.p}")


def main(path):
    for blob in blobs(open(path, "rb").read()):
        r = Reader(blob)
        assert blob[:2] == b"X\n", "not XDR serialization"
        r.p = 2
        version = r.int()
        r.int(), r.int()
        if version == 3:
            n = r.int()  # native encoding name
            r.p += n
        value = r.item()
        if isinstance(value, list) and value and value[0] in WANT:
            with open(WANT[value[0]], "w") as f:
                f.write("\n".join(line or "" for line in value) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
