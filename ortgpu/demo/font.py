"""A 5x7 bitmap font and a renderer: the demo draws its own text image, so it needs no Pillow
and no font files.  Glyphs are rows of five cells, '#' inked."""
from __future__ import annotations

import numpy as np

_GLYPHS = {
    "A": ".###. #...# #...# ##### #...# #...# #...#",
    "B": "####. #...# #...# ####. #...# #...# ####.",
    "C": ".###. #...# #.... #.... #.... #...# .###.",
    "D": "####. #...# #...# #...# #...# #...# ####.",
    "E": "##### #.... #.... ####. #.... #.... #####",
    "F": "##### #.... #.... ####. #.... #.... #....",
    "G": ".###. #...# #.... #.### #...# #...# .####",
    "H": "#...# #...# #...# ##### #...# #...# #...#",
    "I": ".###. ..#.. ..#.. ..#.. ..#.. ..#.. .###.",
    "J": "..### ...#. ...#. ...#. ...#. #..#. .##..",
    "K": "#...# #..#. #.#.. ##... #.#.. #..#. #...#",
    "L": "#.... #.... #.... #.... #.... #.... #####",
    "M": "#...# ##.## #.#.# #.#.# #...# #...# #...#",
    "N": "#...# #...# ##..# #.#.# #..## #...# #...#",
    "O": ".###. #...# #...# #...# #...# #...# .###.",
    "P": "####. #...# #...# ####. #.... #.... #....",
    "Q": ".###. #...# #...# #...# #.#.# #..#. .##.#",
    "R": "####. #...# #...# ####. #.#.. #..#. #...#",
    "S": ".#### #.... #.... .###. ....# ....# ####.",
    "T": "##### ..#.. ..#.. ..#.. ..#.. ..#.. ..#..",
    "U": "#...# #...# #...# #...# #...# #...# .###.",
    "V": "#...# #...# #...# #...# #...# .#.#. ..#..",
    "W": "#...# #...# #...# #.#.# #.#.# #.#.# .#.#.",
    "X": "#...# #...# .#.#. ..#.. .#.#. #...# #...#",
    "Y": "#...# #...# .#.#. ..#.. ..#.. ..#.. ..#..",
    "Z": "##### ....# ...#. ..#.. .#... #.... #####",
    "0": ".###. #...# #..## #.#.# ##..# #...# .###.",
    "1": "..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###.",
    "2": ".###. #...# ....# ...#. ..#.. .#... #####",
    "3": "####. ....# ....# .###. ....# ....# ####.",
    "4": "...#. ..##. .#.#. #..#. ##### ...#. ...#.",
    "5": "##### #.... ####. ....# ....# #...# .###.",
    "6": "..##. .#... #.... ####. #...# #...# .###.",
    "7": "##### ....# ...#. ..#.. .#... .#... .#...",
    "8": ".###. #...# #...# .###. #...# #...# .###.",
    "9": ".###. #...# #...# .#### ....# ...#. .##..",
    " ": "..... ..... ..... ..... ..... ..... .....",
    ".": "..... ..... ..... ..... ..... .##.. .##..",
    "-": "..... ..... ..... ##### ..... ..... .....",
    ":": "..... .##.. .##.. ..... .##.. .##.. .....",
    "!": "..#.. ..#.. ..#.. ..#.. ..#.. ..... ..#..",
}

GLYPH_W, GLYPH_H = 5, 7
CHARS = frozenset(_GLYPHS)


def glyph(ch: str) -> np.ndarray:
    """The 7x5 boolean cells of one character (KeyError names the ones the font lacks)."""
    try:
        rows = _GLYPHS[ch.upper()].split()
    except KeyError:
        raise KeyError(f"the demo font has no glyph for {ch!r} (it has {''.join(sorted(CHARS))!r})") from None
    return np.array([[c == "#" for c in row] for row in rows], dtype=bool)


def render_lines(lines: list[str], cell: int = 4, margin: int = 24, line_gap: int = 28) -> np.ndarray:
    """A white HxWx3 uint8 image with each line drawn in dark ink, `cell` pixels per font cell,
    softened by a 3x3 box blur as print is (the recognizer was trained on real text)."""
    char_w = (GLYPH_W + 1) * cell
    text_h = GLYPH_H * cell

    def advance(ch):  # a space is wider than a letter, as in proportional print
        return 2 * char_w if ch == " " else char_w
    width = 2 * margin + max(sum(advance(c) for c in s) for s in lines)
    height = 2 * margin + len(lines) * text_h + (len(lines) - 1) * line_gap
    ink = np.zeros((height, width), dtype=bool)
    for i, text in enumerate(lines):
        top, left = margin + i * (text_h + line_gap), margin
        for ch in text:
            ink[top:top + text_h, left:left + GLYPH_W * cell] = np.kron(glyph(ch), np.ones((cell, cell), bool))
            left += advance(ch)
    gray = np.where(ink, 30.0, 245.0)
    padded = np.pad(gray, 1, mode="edge")
    blurred = sum(padded[dy:dy + height, dx:dx + width] for dy in range(3) for dx in range(3)) / 9.0
    return np.repeat(blurred.round().astype(np.uint8)[:, :, None], 3, axis=2)
